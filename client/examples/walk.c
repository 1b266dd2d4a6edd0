/*
 * walk: a C client of the Tales of Shadowland SDK.
 *
 *   walk HOST:PORT SERVER_KEY_HEX [INTEGRITY_SECRET_HEX] [ACCOUNT]
 *
 * Connects to the server pinning its key (the server logs it at start),
 * registers the account (or logs in if it exists), creates a character if
 * the account has none, enters the world, walks a square for four seconds
 * while printing the entities it sees, and disconnects cleanly.
 *
 * Integrity: the server challenges clients with its integrity table
 * (security.integrity_check, on by default). A shipped game carries the
 * table of its build, made at build time by tos_integrity_table from the
 * server's integrity.secret; this example makes it at start from the
 * secret given on the command line, to stay one file. Leave it out when
 * the server does not check integrity.
 *
 * Build (Linux; docs/CLIENT.md for the others):
 *   cargo build -p tos-client
 *   cc -std=c11 -Wall -Iclient/include client/examples/walk.c \
 *      target/debug/libtos_client.a -lpthread -ldl -lm -o walk
 *
 * Exit status: 0 after entering the world, walking and seeing at least one
 * entity; 1 otherwise; 2 for bad arguments.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#ifdef _WIN32
#include <windows.h>
#include <process.h>
#define getpid _getpid
#else
#include <unistd.h>
#endif

#include "tos_client.h"

static double now_s(void) {
#ifdef _WIN32
    return (double)GetTickCount64() / 1000.0;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
#endif
}

static void sleep_ms(int ms) {
#ifdef _WIN32
    Sleep((DWORD)ms);
#else
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
#endif
}

static int fail(const char *what, TosResult r) {
    fprintf(stderr, "walk: %s failed (%d): %s\n", what, (int)r, tos_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: walk HOST:PORT SERVER_KEY_HEX [INTEGRITY_SECRET_HEX] [ACCOUNT]\n");
        return 2;
    }
    uint8_t key[32];
    TosResult r = tos_parse_key_hex(argv[2], key);
    if (r != TOS_RESULT_OK) {
        fprintf(stderr, "walk: bad server key: %s\n", tos_last_error());
        return 2;
    }
    static uint8_t table[TOS_INTEGRITY_TABLE_BYTES];
    int has_integrity = argc >= 4 && argv[3][0] != '\0';
    if (has_integrity) {
        /* The integrity secret is 32 bytes in hex, like the key. */
        uint8_t secret[32];
        if (tos_parse_key_hex(argv[3], secret) != TOS_RESULT_OK ||
            tos_integrity_table(secret, 1, table, sizeof table) != TOS_RESULT_OK) {
            fprintf(stderr, "walk: bad integrity secret: %s\n", tos_last_error());
            return 2;
        }
    }
    char account[32];
    if (argc >= 5) {
        snprintf(account, sizeof account, "%s", argv[4]);
    } else {
        snprintf(account, sizeof account, "walker%ld", (long)getpid());
    }

    TosConnectParams params;
    memset(&params, 0, sizeof params);
    params.server_addr = argv[1];
    params.server_key = key;
    params.account = account;
    params.password = "walk the square";
    params.character_name = account;
    params.character_template = 1;
    params.register_account = 1;
    if (has_integrity) {
        params.integrity_table = table;
        params.integrity_version = 1;
    }

    TosClient *client = NULL;
    r = tos_client_connect(&params, &client);
    if (r != TOS_RESULT_OK) {
        return fail("tos_client_connect", r);
    }
    printf("%s: connecting to %s as %s\n", tos_version(), argv[1], account);

    TosEvent events[64];
    int entered = 0, ended = 0;
    uint32_t own_id = 0;
    float pos[3] = {0, 0, 0};
    unsigned entities_seen = 0, updates = 0, corrections = 0;
    int said = 0, heard = 0, have_stats = 0;
    uint32_t last_ack = 0;
    double start = now_s(), walk_start = 0, last_move = 0;
    const double walk_seconds = 4.0, speed = 300.0; /* 3 m/s: a stroll */

    while (!ended) {
        double t = now_s();
        if (t - start > 30.0) {
            fprintf(stderr, "walk: gave up after 30 s (entered: %d)\n", entered);
            break;
        }
        size_t n = 0;
        r = tos_client_poll(client, events, 64, &n);
        if (r == TOS_RESULT_CLOSED) {
            break;
        }
        if (r != TOS_RESULT_OK) {
            tos_client_free(client);
            return fail("tos_client_poll", r);
        }
        for (size_t i = 0; i < n; i++) {
            const TosEvent *e = &events[i];
            switch (e->kind) {
            case TOS_EVENT_KIND_CONNECTED:
                printf("connected (server key verified)\n");
                break;
            case TOS_EVENT_KIND_AUTHENTICATED:
                printf("authenticated: account %llu\n", (unsigned long long)e->id);
                break;
            case TOS_EVENT_KIND_CHARACTER_CREATED:
                printf("created character %llu\n", (unsigned long long)e->id);
                break;
            case TOS_EVENT_KIND_ENTERED_WORLD:
                entered = 1;
                own_id = e->entity.id;
                memcpy(pos, e->entity.position, sizeof pos);
                walk_start = last_move = now_s();
                printf("entered world: entity %u at (%.0f, %.0f, %.0f), tick %u\n", own_id,
                       pos[0], pos[1], pos[2], e->tick);
                break;
            case TOS_EVENT_KIND_ENTITY_CREATED:
                entities_seen++;
                printf("entity %u (type %u%s) at (%.0f, %.0f, %.0f) tick %u\n", e->entity.id,
                       e->entity.entity_type, e->entity.id == own_id ? ", me" : "",
                       e->entity.position[0], e->entity.position[1], e->entity.position[2],
                       e->entity.tick);
                break;
            case TOS_EVENT_KIND_ENTITY_UPDATED:
                updates++;
                break;
            case TOS_EVENT_KIND_ENTITY_REMOVED:
                printf("entity %u left view\n", e->entity.id);
                break;
            case TOS_EVENT_KIND_SNAPSHOT:
                last_ack = e->input_seq;
                break;
            case TOS_EVENT_KIND_CORRECTION:
                /* The server is authoritative: continue from its position
                   plus the moves it has not seen yet. */
                corrections++;
                memcpy(pos, e->predicted, sizeof pos);
                break;
            case TOS_EVENT_KIND_STATS_CHANGED: {
                TosCharacterStats cs;
                if (tos_client_character_stats(client, &cs) == TOS_RESULT_OK) {
                    have_stats = 1;
                    printf("stats: level %u, exp %llu/%llu, hp %.0f, mp %.0f, p.atk %.1f\n",
                           cs.level, (unsigned long long)cs.exp,
                           (unsigned long long)cs.exp_next, cs.hp_max, cs.mp_max, cs.p_atk);
                }
                break;
            }
            case TOS_EVENT_KIND_INVENTORY_CHANGED: {
                TosInventory inv;
                TosItem items[64];
                if (tos_client_inventory(client, &inv, items, 64) == TOS_RESULT_OK) {
                    printf("inventory: %u of %u slots, weight %u/%u\n", inv.item_count,
                           inv.capacity, inv.weight, inv.weight_limit);
                }
                break;
            }
            case TOS_EVENT_KIND_CHAT: {
                TosChatLine line;
                while (tos_client_poll_chat(client, &line) == TOS_RESULT_OK) {
                    printf("chat [%u] %s: %s\n", line.channel, line.from, line.text);
                    if (strcmp(line.text, "hello from C") == 0) {
                        heard = 1;
                    }
                }
                break;
            }
            case TOS_EVENT_KIND_LOGIN_FAILED:
                fprintf(stderr, "walk: login failed: request %u, reason %u\n", e->request,
                        e->code);
                ended = 1;
                break;
            case TOS_EVENT_KIND_DENIED:
                fprintf(stderr, "walk: connection denied: reason %u\n", e->code);
                ended = 1;
                break;
            case TOS_EVENT_KIND_DISCONNECTED:
                fprintf(stderr, "walk: disconnected: reason %u\n", e->code);
                ended = 1;
                break;
            default:
                break;
            }
        }
        if (entered && !ended) {
            double now = now_s(), elapsed = now - walk_start;
            if (elapsed >= walk_seconds && (heard || elapsed >= walk_seconds + 2.0)) {
                break;
            }
            if (!said) {
                /* Say reaches the players nearby, the speaker included. */
                r = tos_client_chat(client, 0, NULL, "hello from C");
                if (r != TOS_RESULT_OK) {
                    tos_client_free(client);
                    return fail("tos_client_chat", r);
                }
                said = 1;
            }
            /* A square: one side per second, east, north, west, south. */
            static const float dirs[4][2] = {{1, 0}, {0, 1}, {-1, 0}, {0, -1}};
            int side = (int)elapsed % 4;
            float dt = (float)(now - last_move);
            last_move = now;
            float vel[3] = {dirs[side][0] * (float)speed, dirs[side][1] * (float)speed, 0};
            pos[0] += vel[0] * dt;
            pos[1] += vel[1] * dt;
            float yaw = (float)(side * 90);
            uint32_t seq = 0;
            r = tos_client_move(client, pos, vel, yaw, 1 /* walk */, dt, &seq);
            if (r != TOS_RESULT_OK && r != TOS_RESULT_SEND_FAILED) {
                tos_client_free(client);
                return fail("tos_client_move", r);
            }
        }
        sleep_ms(16);
    }

    TosStats stats;
    if (tos_client_stats(client, &stats) == TOS_RESULT_OK) {
        printf("entities seen: %u, in view: %u, updates: %u, snapshots: %llu, corrections: %u, "
               "input ack: %u, rtt %.1f ms\n",
               entities_seen, stats.entities_in_view, updates,
               (unsigned long long)stats.snapshots, corrections, last_ack, stats.rtt_ms);
    }
    r = tos_client_close(client);
    if (r != TOS_RESULT_OK && r != TOS_RESULT_CLOSED) {
        fprintf(stderr, "walk: close: %s\n", tos_last_error());
    }
    tos_client_free(client);
    if (!entered || entities_seen == 0) {
        fprintf(stderr, "walk: did not enter and see the world\n");
        return 1;
    }
    if (!have_stats || !heard) {
        fprintf(stderr, "walk: no statistics (%d) or did not hear its own line (%d)\n",
                have_stats, heard);
        return 1;
    }
    printf("disconnected cleanly\n");
    return 0;
}
