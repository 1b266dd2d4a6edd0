// walk (C++): the C example's walk, on the header-only C++ wrapper.
//
//   walk_cpp HOST:PORT SERVER_KEY_HEX [INTEGRITY_SECRET_HEX] [ACCOUNT]
//
// Build (Linux):
//   cargo build -p tos-client
//   c++ -std=c++20 -Iclient/include client/examples/walk.cpp
//       target/debug/libtos_client.a -lpthread -ldl -lm -o walk_cpp
#include <array>
#include <chrono>
#include <cstdio>
#include <set>
#include <string>
#include <thread>

#include "tos_client.hpp"

int main(int argc, char** argv) {
    if (argc < 3) {
        std::fprintf(stderr, "usage: walk_cpp HOST:PORT SERVER_KEY_HEX [INTEGRITY_SECRET_HEX] [ACCOUNT]\n");
        return 2;
    }
    using clock = std::chrono::steady_clock;
    try {
        tos::ConnectOptions o;
        o.server_addr = argv[1];
        o.server_key = tos::parse_key(argv[2]);
        if (argc >= 4 && argv[3][0] != '\0') {
            // A shipped game loads its build's table; this example makes it.
            o.integrity_table = tos::integrity_table(tos::parse_key(argv[3]), 1);
        }
        o.account = argc >= 5 ? argv[4] : "cppwalker";
        o.password = "walk the square";
        tos::Client client(o);
        std::printf("%s: connecting to %s as %s\n", tos_version(), argv[1], o.account.c_str());

        std::array<TosEvent, 64> buffer{};
        std::set<std::uint32_t> seen;
        bool entered = false;
        std::uint32_t me = 0;
        std::array<float, 3> pos{};
        auto start = clock::now(), walk_start = start, last = start;
        bool done = false;
        while (!done && clock::now() - start < std::chrono::seconds(30)) {
            auto events = client.poll(buffer);
            if (!events) {
                break;
            }
            for (const TosEvent& e : *events) {
                switch (e.kind) {
                case TOS_EVENT_KIND_CONNECTED:
                    std::printf("connected (server key verified)\n");
                    break;
                case TOS_EVENT_KIND_ENTERED_WORLD:
                    entered = true;
                    me = e.entity.id;
                    pos = {e.entity.position[0], e.entity.position[1], e.entity.position[2]};
                    walk_start = last = clock::now();
                    std::printf("entered world: entity %u\n", me);
                    break;
                case TOS_EVENT_KIND_ENTITY_CREATED:
                    if (seen.insert(e.entity.id).second) {
                        std::printf("entity %u (type %u) at (%.0f, %.0f)\n", e.entity.id,
                                    e.entity.entity_type, e.entity.position[0],
                                    e.entity.position[1]);
                    }
                    break;
                case TOS_EVENT_KIND_STATS_CHANGED:
                    if (const auto cs = client.character_stats()) {
                        std::printf("stats: level %u, exp %llu/%llu\n", cs->level,
                                    static_cast<unsigned long long>(cs->exp),
                                    static_cast<unsigned long long>(cs->exp_next));
                    }
                    break;
                case TOS_EVENT_KIND_INVENTORY_CHANGED: {
                    const auto [inv, items] = client.inventory();
                    std::printf("inventory: %zu of %u slots\n", items.size(), inv.capacity);
                    break;
                }
                case TOS_EVENT_KIND_CORRECTION:
                    pos = {e.predicted[0], e.predicted[1], e.predicted[2]};
                    break;
                case TOS_EVENT_KIND_LOGIN_FAILED:
                case TOS_EVENT_KIND_DENIED:
                case TOS_EVENT_KIND_DISCONNECTED:
                    std::fprintf(stderr, "walk_cpp: session ended (kind %u, code %u)\n",
                                 static_cast<unsigned>(e.kind), e.code);
                    done = true;
                    break;
                default:
                    break;
                }
            }
            if (entered && !done) {
                const auto now = clock::now();
                const double elapsed = std::chrono::duration<double>(now - walk_start).count();
                if (elapsed >= 4.0) {
                    break;
                }
                const float dt = std::chrono::duration<float>(now - last).count();
                last = now;
                static constexpr float dirs[4][2] = {{1, 0}, {0, 1}, {-1, 0}, {0, -1}};
                const int side = static_cast<int>(elapsed) % 4;
                const std::array<float, 3> vel{dirs[side][0] * 300.0f, dirs[side][1] * 300.0f, 0};
                pos[0] += vel[0] * dt;
                pos[1] += vel[1] * dt;
                try {
                    client.move(pos, vel, side * 90.0f, 1, dt);
                } catch (const tos::Error& err) {
                    if (err.code() != TOS_RESULT_SEND_FAILED) {
                        throw;
                    }
                }
                // Where the player itself is drawn (interpolated).
                (void)client.sample(me, 3.0);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(16));
        }
        const TosStats s = client.stats();
        std::printf("entities seen: %zu, in view: %u, snapshots: %llu\n", seen.size(),
                    s.entities_in_view, static_cast<unsigned long long>(s.snapshots));
        const auto ticket = client.ticket();
        std::printf("ticket: %zu bytes\n", ticket.size());
        client.close();
        if (!entered || seen.empty()) {
            std::fprintf(stderr, "walk_cpp: did not enter and see the world\n");
            return 1;
        }
        std::printf("disconnected cleanly\n");
        return 0;
    } catch (const tos::Error& e) {
        std::fprintf(stderr, "walk_cpp: %s (code %d)\n", e.what(), static_cast<int>(e.code()));
        return 1;
    }
}
