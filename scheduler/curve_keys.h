// ZeroMQ CURVE keys for the scheduler's sockets: key pairs in Z85 text (40
// characters), as `lema keys` writes them (NAME.key secret, NAME.pub public).
//
// Thread-safety: free functions; thread-safe.
#pragma once

#include <string>
#include <vector>

#include "common/base/status.h"

namespace lema {

struct CurveKeyPair {
  std::string public_z85;
  std::string secret_z85;
};

// True when libzmq was built with CURVE (libsodium).
bool curve_available();
Result<CurveKeyPair> make_curve_keypair();
// Writes DIR/NAME.pub (0644) and DIR/NAME.key (0600, secret) atomically.
Status write_curve_keypair(const std::string& dir, const std::string& name, const CurveKeyPair& keys);
// Reads one Z85 key (the first 40-character token of the file).
Result<std::string> read_curve_key(const std::string& path);
// Reads every Z85 public key in a file (one per line; '#' comments).
Result<std::vector<std::string>> read_curve_key_list(const std::string& path);
// The scheduler's authorized keys: every key of every *.pub file in a
// directory (one file per worker or client: delete it to revoke), or of one
// file (read_curve_key_list). An unreadable or malformed file is an error
// naming it: a typo must not silently lock a worker out or let one in.
Result<std::vector<std::string>> read_authorized_keys(const std::string& path);
// The public key of a secret key (both Z85): a worker needs only its .key.
Result<std::string> curve_public_key_of(const std::string& secret_z85);

}  // namespace lema
