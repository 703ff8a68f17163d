/*
 * `luar webhook sign` and `luar webhook send` (SPEC §2): sign a body the way a provider
 * would, with any registered scheme (webhooks/scheme.h), and print the headers or POST it
 * to a URL, like `stripe trigger` does for Stripe.
 */
#ifndef LUAR_CLI_WEBHOOK_CMD_H
#define LUAR_CLI_WEBHOOK_CMD_H

/*
 * Runs `luar webhook SUB [options] [FILE]`. argv[0] is the subcommand ("sign" or "send"),
 * argv[1..argc-1] its options and the optional FILE (the body; stdin when absent or "-").
 * Options take their value as `--opt V` or `--opt=V`:
 *   sign: --scheme S --secret X [--timestamp T] [--id ID] [--option KEY=VALUE]...
 *   send: the same, plus --url URL [--header 'Name: value']... [--timeout SECONDS]
 * `sign` prints one `Name: value` line per header; `send` prints the response's status
 * line ("200 OK") and body. Errors go to stderr as one line. Returns the exit status: 0
 * (send: a 2xx answer), 1 (send: another status or a transport error), 2 (usage: unknown
 * scheme, missing --secret, bad option, unreadable FILE). The caller keeps `argv`.
 */
int luar_cli_webhook(int argc, char **argv);

#endif
