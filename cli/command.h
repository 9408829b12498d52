// How a `lema` subcommand plugs in: each cli/cmd_<verb>.cpp defines a setup
// function that adds its CLI11 subcommand, and registers it with
// LEMA_REGISTER_COMMAND. lema.cpp runs every setup, parses, and returns the
// exit code that the command's callback stored through finish().
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

#include "common/base/status.h"

namespace lema::cli {

using CommandSetup = void (*)(CLI::App& app);

// Returns true so it can initialise a static (see LEMA_REGISTER_COMMAND).
bool register_command(CommandSetup setup);
// Runs every registered setup on `app` (main, before parsing).
void setup_commands(CLI::App& app);

// The subcommand `name` of `app`, created on first use with `help`: lets
// several files add verbs under one noun (`lema model init`, `lema model pretrain`).
CLI::App* group(CLI::App& app, const std::string& name, const std::string& help);

// An option that takes a size ("4GiB", "512MiB", "1e9") into `bytes`; a bad
// size is a usage error naming the option. `bytes` must outlive parsing.
CLI::Option* add_bytes_option(CLI::App* cmd, const std::string& name, uint64_t& bytes, const std::string& help);

// Exit codes: 0 success; 1 failure; 2 bad usage or input; 3 not found;
// 4 corrupt data; 5 I/O error; 6 unavailable (scheduler down); 130 cancelled.
int exit_code_for(const Status& status);

// Prints "lema: error: <message>" for a non-OK status and records the exit
// code that main() returns. Call it once at the end of a command callback.
void finish(const Status& status);
int recorded_exit_code();

}  // namespace lema::cli

#define LEMA_REGISTER_COMMAND(fn) \
  static const bool lema_registered_##fn = ::lema::cli::register_command(fn)
