// `lema version`: the version and the build's git commit.
#include <cstdio>

#include "cli/command.h"
#include "common/base/version.h"

namespace {
void setup_version(CLI::App& app) {
  app.add_subcommand("version", "Print the version and git commit")->callback([] {
    std::printf("%s\n", LEMA_VERSION_STRING);
    lema::cli::finish(lema::Status());
  });
}
}  // namespace

LEMA_REGISTER_COMMAND(setup_version);
