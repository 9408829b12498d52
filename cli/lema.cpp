// The `lema` binary. Every verb lives in its own cli/cmd_<verb>.cpp and
// registers itself (cli/command.h).
#include "cli/blas_tuning.h"
#include "cli/command.h"
#include "common/base/version.h"

int main(int argc, char** argv) {
  lema::cli::tune_openblas(argv);
  CLI::App app{"lema: LoRA fine-tuning of large language models on small GPUs, by layer streaming"};
  app.set_version_flag("--version", LEMA_VERSION_STRING);
  app.require_subcommand(1);
  lema::cli::setup_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  return lema::cli::recorded_exit_code();
}
