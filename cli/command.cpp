#include "cli/command.h"

#include <cstdio>
#include <vector>

#include "common/base/file_util.h"

namespace lema::cli {
namespace {
std::vector<CommandSetup>& registry() {
  static std::vector<CommandSetup> setups;
  return setups;
}
int g_exit_code = 0;
}  // namespace

bool register_command(CommandSetup setup) {
  registry().push_back(setup);
  return true;
}

void setup_commands(CLI::App& app) {
  for (CommandSetup setup : registry()) setup(app);
}

CLI::App* group(CLI::App& app, const std::string& name, const std::string& help) {
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) {
    if (sub->get_name() == name) return sub;
  }
  CLI::App* sub = app.add_subcommand(name, help);
  sub->require_subcommand(1);
  return sub;
}

CLI::Option* add_bytes_option(CLI::App* cmd, const std::string& name, uint64_t& bytes, const std::string& help) {
  return cmd->add_option_function<std::string>(
      name,
      [name, &bytes](const std::string& text) {
        Result<uint64_t> parsed = parse_bytes(text);
        if (!parsed.ok()) throw CLI::ValidationError(name, parsed.status().message());
        bytes = *parsed;
      },
      help);
}

int exit_code_for(const Status& status) {
  switch (status.code()) {
    case Status::Code::kOk: return 0;
    case Status::Code::kInvalidArgument:
    case Status::Code::kUnsupported: return 2;
    case Status::Code::kNotFound: return 3;
    case Status::Code::kCorruption: return 4;
    case Status::Code::kIOError: return 5;
    case Status::Code::kUnavailable: return 6;
    case Status::Code::kCancelled: return 130;
    case Status::Code::kInternal: return 1;
  }
  return 1;
}

void finish(const Status& status) {
  if (!status.ok()) std::fprintf(stderr, "lema: error: %s\n", status.message().c_str());
  g_exit_code = exit_code_for(status);
}

int recorded_exit_code() { return g_exit_code; }

}  // namespace lema::cli

