#include "scheduler/curve_keys.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>

#include <sstream>

#include <zmq.h>

#include "common/base/file_util.h"

namespace lema {

bool curve_available() { return zmq_has("curve") == 1; }

Result<CurveKeyPair> make_curve_keypair() {
  if (!curve_available()) return Status::unsupported("this libzmq has no CURVE support (built without libsodium)");
  char pub[41] = {0}, sec[41] = {0};
  if (zmq_curve_keypair(pub, sec) != 0) return Status::internal(std::string("zmq_curve_keypair: ") + zmq_strerror(zmq_errno()));
  return CurveKeyPair{pub, sec};
}

Status write_curve_keypair(const std::string& dir, const std::string& name, const CurveKeyPair& keys) {
  LEMA_RETURN_IF_ERROR(make_dirs(dir));
  std::string pub = path_join(dir, name + ".pub"), sec = path_join(dir, name + ".key");
  LEMA_RETURN_IF_ERROR(write_file_atomic(pub, keys.public_z85 + "\n"));
  LEMA_RETURN_IF_ERROR(write_file_atomic(sec, keys.secret_z85 + "\n"));
  if (chmod(sec.c_str(), 0600) != 0) return status_from_errno("chmod " + sec, errno);
  return Status();
}

namespace {
bool is_z85_key(const std::string& s) {
  if (s.size() != 40) return false;
  uint8_t bin[32];
  return zmq_z85_decode(bin, s.c_str()) != nullptr;
}
}  // namespace

Result<std::vector<std::string>> read_curve_key_list(const std::string& path) {
  LEMA_ASSIGN_OR_RETURN(std::string text, read_file(path));
  std::vector<std::string> keys;
  std::istringstream in(text);
  std::string line;
  int line_no = 0;
  while (std::getline(in, line)) {
    ++line_no;
    std::string tok;
    std::istringstream ls(line);
    if (!(ls >> tok) || tok[0] == '#') continue;
    if (!is_z85_key(tok)) {
      return Status::invalid_argument(path + ":" + std::to_string(line_no) + ": not a 40-character Z85 CURVE key");
    }
    keys.push_back(tok);
  }
  return keys;
}

Result<std::string> read_curve_key(const std::string& path) {
  LEMA_ASSIGN_OR_RETURN(std::vector<std::string> keys, read_curve_key_list(path));
  if (keys.empty()) return Status::invalid_argument(path + ": no CURVE key in the file");
  return keys[0];
}

Result<std::vector<std::string>> read_authorized_keys(const std::string& path) {
  if (!is_directory(path)) return read_curve_key_list(path);
  DIR* dir = opendir(path.c_str());
  if (dir == nullptr) return status_from_errno("open directory " + path, errno);
  std::vector<std::string> files;
  while (struct dirent* e = readdir(dir)) {
    std::string name = e->d_name;
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".pub") == 0) files.push_back(path_join(path, name));
  }
  closedir(dir);
  std::sort(files.begin(), files.end());
  std::vector<std::string> keys;
  for (const std::string& f : files) {
    LEMA_ASSIGN_OR_RETURN(std::vector<std::string> in_file, read_curve_key_list(f));
    keys.insert(keys.end(), in_file.begin(), in_file.end());
  }
  return keys;
}

Result<std::string> curve_public_key_of(const std::string& secret_z85) {
  if (!curve_available()) return Status::unsupported("this libzmq has no CURVE support (built without libsodium)");
  if (!is_z85_key(secret_z85)) return Status::invalid_argument("not a 40-character Z85 CURVE secret key");
  char pub[41] = {0};
  if (zmq_curve_public(pub, secret_z85.c_str()) != 0) {
    return Status::invalid_argument(std::string("zmq_curve_public: ") + zmq_strerror(zmq_errno()));
  }
  return std::string(pub);
}

}  // namespace lema
