/* `luar secrets …` and `luar audit verify` (host/secrets, host/audit). */
#ifndef LUAR_CLI_SECRETS_CMD_H
#define LUAR_CLI_SECRETS_CMD_H

/*
 * `luar secrets set|get|list|delete|rotate-key|gen-key …`: argv[0] is the subcommand,
 * --config F and --data DIR may appear anywhere. Returns the exit status: 0, 1 (runtime:
 * missing secret, corrupt file, i/o) or 2 (usage, configuration, wrong key).
 */
int luar_cli_secrets(int argc, char **argv);

/* `luar audit verify [FILE]`: 0 when the chain holds, 1 when it breaks, 2 on usage. */
int luar_cli_audit(int argc, char **argv);

#endif
