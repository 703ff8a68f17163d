/*
 * Which IP addresses are not on the public Internet: loopback, private (RFC 1918, ULA),
 * link-local, unspecified and the other special-purpose ranges of the IANA registries that
 * are not globally reachable. Outbound webhook delivery refuses to connect to them (SPEC §8,
 * `webhooks.deliver_allow_private`) so a customer-supplied URL cannot reach the host's own
 * services (SSRF). Pure functions: no I/O, no DNS.
 */
#ifndef LUAR_CLIENT_ADDR_H
#define LUAR_CLIENT_ADDR_H

/*
 * Classifies the numeric address `ip` ("10.0.0.1", "::1", "[fe80::1]", "fe80::1%eth0";
 * IPv4-mapped, IPv4-compatible, NAT64 (64:ff9b::/96) and 6to4 addresses are judged by the
 * IPv4 address they carry). Returns 0 and sets `*kind` to NULL for a public address or to a
 * static word naming the range: "loopback", "private", "link-local", "unspecified",
 * "shared" (100.64.0.0/10, carrier-grade NAT), "multicast", "documentation",
 * "benchmarking", "reserved" or "broadcast". Returns LUAR_EINVAL when `ip` is not a
 * numeric address (a host name).
 */
int luar_addr_classify(const char *ip, const char **kind);

#endif
