/* The command line: `luar serve|check|run|test|reload|version|webhook …`. */
#ifndef LUAR_CLI_H
#define LUAR_CLI_H

/* Runs the command named by argv[1]; returns the process exit status (0, 1 or 2). */
int luar_cli_main(int argc, char **argv);

#endif
