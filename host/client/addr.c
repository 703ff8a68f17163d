/*
 * Special-purpose address ranges (addr.h). The tables follow the IANA IPv4 and IPv6
 * Special-Purpose Address Registries (RFC 6890 and updates), keeping the ranges whose
 * "Globally Reachable" is false, plus multicast and broadcast, which are never a webhook
 * receiver either.
 */
#include "client/addr.h"
#include "common/error.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

typedef struct range4 {
    uint32_t net;
    int bits;
    const char *kind;
} range4_t;

static const range4_t ranges4[] = {
    {0x00000000u, 8, "unspecified"},    /* 0.0.0.0/8 "this network" */
    {0x0A000000u, 8, "private"},        /* 10.0.0.0/8 */
    {0x64400000u, 10, "shared"},        /* 100.64.0.0/10 carrier-grade NAT */
    {0x7F000000u, 8, "loopback"},       /* 127.0.0.0/8 */
    {0xA9FE0000u, 16, "link-local"},    /* 169.254.0.0/16 (cloud metadata lives here) */
    {0xAC100000u, 12, "private"},       /* 172.16.0.0/12 */
    {0xC0000000u, 24, "reserved"},      /* 192.0.0.0/24 IETF protocol assignments */
    {0xC0000200u, 24, "documentation"}, /* 192.0.2.0/24 TEST-NET-1 */
    {0xC0586300u, 24, "reserved"},      /* 192.88.99.0/24 former 6to4 relays */
    {0xC0A80000u, 16, "private"},       /* 192.168.0.0/16 */
    {0xC6120000u, 15, "benchmarking"},  /* 198.18.0.0/15 */
    {0xC6336400u, 24, "documentation"}, /* 198.51.100.0/24 TEST-NET-2 */
    {0xCB007100u, 24, "documentation"}, /* 203.0.113.0/24 TEST-NET-3 */
    {0xE0000000u, 4, "multicast"},      /* 224.0.0.0/4 */
    {0xFFFFFFFFu, 32, "broadcast"},     /* 255.255.255.255 (before 240/4, which holds it) */
    {0xF0000000u, 4, "reserved"},       /* 240.0.0.0/4 */
};

static const char *classify4(uint32_t a)
{
    for (size_t i = 0; i < sizeof ranges4 / sizeof ranges4[0]; i++) {
        uint32_t mask = ranges4[i].bits ? 0xFFFFFFFFu << (32 - ranges4[i].bits) : 0;
        if ((a & mask) == ranges4[i].net)
            return ranges4[i].kind;
    }
    return NULL;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Whether the first `bits` bits of `a` equal those of `prefix` (16 bytes). */
static int in6(const unsigned char *a, const unsigned char prefix[16], int bits)
{
    int bytes = bits / 8, rest = bits % 8;
    if (memcmp(a, prefix, (size_t)bytes) != 0)
        return 0;
    if (rest == 0)
        return 1;
    unsigned char mask = (unsigned char)(0xFF << (8 - rest));
    return (a[bytes] & mask) == (prefix[bytes] & mask);
}

static const char *classify6(const unsigned char *a)
{
    /* Prefixes as whole addresses (the bits past the prefix length are ignored). */
    static const unsigned char zero[16];
    static const unsigned char mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
    static const unsigned char nat64[16] = {0x00, 0x64, 0xFF, 0x9B};
    static const unsigned char p6to4[16] = {0x20, 0x02};
    static const unsigned char ula[16] = {0xFC}, linklocal[16] = {0xFE, 0x80},
                               sitelocal[16] = {0xFE, 0xC0}, multicast[16] = {0xFF},
                               doc[16] = {0x20, 0x01, 0x0D, 0xB8}, discard[16] = {0x01, 0x00},
                               ietf[16] = {0x20, 0x01};
    if (memcmp(a, zero, 15) == 0 && a[15] == 0)
        return "unspecified";
    if (memcmp(a, zero, 15) == 0 && a[15] == 1)
        return "loopback";
    /* Addresses carrying an IPv4 address reach wherever that address does. */
    if (memcmp(a, mapped, 12) == 0 || memcmp(a, nat64, 12) == 0 || memcmp(a, zero, 12) == 0)
        return classify4(be32(a + 12));
    if (in6(a, p6to4, 16))
        return classify4(be32(a + 2));
    if (in6(a, ula, 7))
        return "private";
    if (in6(a, linklocal, 10))
        return "link-local";
    if (in6(a, sitelocal, 10))
        return "private"; /* deprecated site-local, still routed privately where used */
    if (in6(a, multicast, 8))
        return "multicast";
    if (in6(a, doc, 32))
        return "documentation";
    if (in6(a, discard, 64))
        return "reserved";
    if (in6(a, ietf, 23))
        return "reserved"; /* 2001::/23 IETF protocol assignments (Teredo, ORCHID, …) */
    return NULL;
}

int luar_addr_classify(const char *ip, const char **kind)
{
    char text[INET6_ADDRSTRLEN + 2];
    size_t len = strlen(ip);
    *kind = NULL;
    if (len > 0 && ip[0] == '[' && ip[len - 1] == ']') {
        ip++;
        len -= 2;
    }
    size_t zone = strcspn(ip, "%"); /* fe80::1%eth0: the zone names an interface, not a host */
    if (zone < len)
        len = zone;
    if (len == 0 || len >= sizeof text)
        return LUAR_EINVAL;
    memcpy(text, ip, len);
    text[len] = '\0';
    unsigned char a[16];
    if (inet_pton(AF_INET, text, a) == 1) {
        *kind = classify4(be32(a));
        return 0;
    }
    if (inet_pton(AF_INET6, text, a) == 1) {
        *kind = classify6(a);
        return 0;
    }
    return LUAR_EINVAL;
}
