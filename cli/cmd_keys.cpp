// `lema keys [NAME]`: makes a ZeroMQ CURVE key pair (NAME.pub, NAME.key) for
// the scheduler (--curve-secret-file) or a worker/client (authorized by
// copying its .pub into the scheduler's --curve-authorized directory; the
// worker runs with --curve-secret-file NAME.key). docs/SECURITY.md.
#include <cstdio>

#include "cli/command.h"
#include "common/base/file_util.h"
#include "scheduler/curve_keys.h"

namespace {

void setup_keys(CLI::App& app) {
  struct Args {
    std::string dir = ".";
    std::string name = "lema";
  };
  auto a = std::make_shared<Args>();
  CLI::App* cmd = app.add_subcommand("keys", "Make a CURVE key pair (NAME.pub, NAME.key) for scheduler authentication");
  cmd->add_option("--out", a->dir, "Directory for the key files")->capture_default_str();
  cmd->add_option("name,--name", a->name, "Key name: the file stem (scheduler, worker-gpu01, alice)")
      ->capture_default_str();
  cmd->callback([a] {
    lema::Status s = [&]() -> lema::Status {
      if (a->name.empty() || a->name.find('/') != std::string::npos) {
        return lema::Status::invalid_argument("key name '" + a->name + "': a file stem without '/'");
      }
      if (lema::path_exists(lema::path_join(a->dir, a->name + ".key"))) {
        return lema::Status::invalid_argument(lema::path_join(a->dir, a->name + ".key") +
                                              " exists; not overwriting a secret key");
      }
      LEMA_ASSIGN_OR_RETURN(lema::CurveKeyPair keys, lema::make_curve_keypair());
      LEMA_RETURN_IF_ERROR(lema::write_curve_keypair(a->dir, a->name, keys));
      std::printf("wrote %s (public) and %s (secret, mode 0600)\n",
                  lema::path_join(a->dir, a->name + ".pub").c_str(), lema::path_join(a->dir, a->name + ".key").c_str());
      return lema::Status();
    }();
    lema::cli::finish(s);
  });
}

}  // namespace

LEMA_REGISTER_COMMAND(setup_keys);
