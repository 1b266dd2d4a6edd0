// Tales of Shadowland client SDK: a header-only C++20 wrapper over
// tos_client.h (RAII handle, exceptions for errors, std::span and
// std::string_view where they help). Nothing here adds behaviour: every
// call is the C function of the same name. See docs/CLIENT.md.
//
// Ownership: tos::Client owns its TosClient handle and frees it in its
// destructor (move-only). Spans and string views passed in are read during
// the call only. Events returned by poll() live in the caller's buffer.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "tos_client.h"

namespace tos {

/// A failed call: the code and the library's message.
class Error : public std::runtime_error {
public:
    Error(TosResult code, const std::string& what)
        : std::runtime_error(what + ": " + tos_last_error()), code_(code) {}
    /// The TOS_RESULT_* code.
    TosResult code() const noexcept { return code_; }

private:
    TosResult code_;
};

namespace detail {
inline void check(TosResult r, const char* what) {
    if (r != TOS_RESULT_OK) {
        throw Error(r, what);
    }
}
}  // namespace detail

/// A 32-byte key (the server's public key, an integrity secret).
using Key = std::array<std::uint8_t, 32>;

/// Parses the 64 hex digits the server logs.
inline Key parse_key(std::string_view hex) {
    Key key{};
    const std::string s(hex);  // NUL-terminated copy
    detail::check(tos_parse_key_hex(s.c_str(), key.data()), "tos_parse_key_hex");
    return key;
}

/// The integrity table of client build `version` from the server's
/// integrity secret: for the game's build pipeline (ship the table, not the
/// secret).
inline std::vector<std::uint8_t> integrity_table(const Key& secret, std::uint16_t version) {
    std::vector<std::uint8_t> t(TOS_INTEGRITY_TABLE_BYTES);
    detail::check(tos_integrity_table(secret.data(), version, t.data(), t.size()),
                  "tos_integrity_table");
    return t;
}

/// How to connect (see TosConnectParams).
struct ConnectOptions {
    std::string server_addr;
    Key server_key{};
    std::string account;
    std::string password;
    std::string character_name;  // empty: the account name
    std::uint16_t character_template = 1;
    bool register_account = true;
    /// Stop at the character list (CHARACTER_LIST event) for the player
    /// to choose with characters() / enter_character() / create_character().
    bool choose_character = false;
    std::vector<std::uint8_t> ticket;
    /// This build's integrity table (TOS_INTEGRITY_TABLE_BYTES), if the
    /// server checks integrity; see integrity_table().
    std::vector<std::uint8_t> integrity_table;
    std::uint16_t integrity_version = 1;
    std::uint32_t tick_hz = 60;
    std::uint32_t handshake_timeout_ms = 0;
};

/// One connection to a world server. Call poll() once per frame.
class Client {
public:
    explicit Client(const ConnectOptions& o) {
        TosConnectParams p{};
        p.server_addr = o.server_addr.c_str();
        p.server_key = o.server_key.data();
        p.account = o.account.c_str();
        p.password = o.password.c_str();
        p.character_name = o.character_name.empty() ? nullptr : o.character_name.c_str();
        p.character_template = o.character_template;
        p.register_account = o.register_account ? 1 : 0;
        p.choose_character = o.choose_character ? 1 : 0;
        p.ticket = o.ticket.empty() ? nullptr : o.ticket.data();
        p.ticket_len = o.ticket.size();
        if (!o.integrity_table.empty() && o.integrity_table.size() != TOS_INTEGRITY_TABLE_BYTES) {
            throw std::invalid_argument("an integrity table is TOS_INTEGRITY_TABLE_BYTES bytes");
        }
        p.integrity_table = o.integrity_table.empty() ? nullptr : o.integrity_table.data();
        p.integrity_version = o.integrity_version;
        p.tick_hz = o.tick_hz;
        p.handshake_timeout_ms = o.handshake_timeout_ms;
        detail::check(tos_client_connect(&p, &handle_), "tos_client_connect");
    }
    ~Client() { tos_client_free(handle_); }
    Client(const Client&) = delete;
    Client& operator=(const Client&) = delete;
    Client(Client&& other) noexcept : handle_(std::exchange(other.handle_, nullptr)) {}
    Client& operator=(Client&& other) noexcept {
        if (this != &other) {
            tos_client_free(handle_);
            handle_ = std::exchange(other.handle_, nullptr);
        }
        return *this;
    }

    /// Pumps the connection and fills `buffer` with events; returns the
    /// filled part, or std::nullopt once the session has ended and every
    /// event was handed out.
    std::optional<std::span<TosEvent>> poll(std::span<TosEvent> buffer) {
        std::size_t n = 0;
        const TosResult r = tos_client_poll(handle_, buffer.data(), buffer.size(), &n);
        if (r == TOS_RESULT_CLOSED) {
            return std::nullopt;
        }
        detail::check(r, "tos_client_poll");
        return buffer.first(n);
    }

    /// Claims a move; returns its input sequence, or 0 (nothing sent)
    /// during a zone transfer: claims supersede each other, so keep
    /// moving and the first claim after ZONE_TRANSFERRED carries the
    /// state. Throws tos::Error with TOS_RESULT_SEND_FAILED when the send
    /// queue is full (skip a frame).
    std::uint32_t move(std::span<const float, 3> position, std::span<const float, 3> velocity,
                       float yaw, std::uint8_t anim, float dt) {
        std::uint32_t seq = 0;
        TosResult r =
            tos_client_move(handle_, position.data(), velocity.data(), yaw, anim, dt, &seq);
        if (r == TOS_RESULT_TRANSFERRING) {
            return 0;
        }
        detail::check(r, "tos_client_move");
        return seq;
    }

    /// The characters listed by the last CHARACTER_LIST event.
    std::vector<TosCharacter> characters(std::size_t count) const {
        std::vector<TosCharacter> out;
        for (std::size_t i = 0; i < count; ++i) {
            TosCharacter c{};
            if (tos_client_character(handle_, i, &c) != TOS_RESULT_OK) {
                break;
            }
            out.push_back(c);
        }
        return out;
    }

    /// Enters the world with a listed character.
    void enter_character(std::uint64_t character_id) {
        detail::check(tos_client_enter_character(handle_, character_id),
                      "tos_client_enter_character");
    }

    /// Creates a character; the list comes again once it exists.
    void create_character(std::string_view name, std::uint16_t character_template,
                          std::span<const std::uint8_t> appearance = {}) {
        const std::string n(name);
        detail::check(tos_client_create_character(handle_, n.c_str(), character_template,
                                                  appearance.empty() ? nullptr : appearance.data(),
                                                  appearance.size()),
                      "tos_client_create_character");
    }

    /// Asks for an action; returns its input sequence.
    std::uint32_t action(std::uint16_t action_id, std::uint32_t target) {
        std::uint32_t seq = 0;
        detail::check(tos_client_action(handle_, action_id, target, &seq), "tos_client_action");
        return seq;
    }

    /// Asks to pick up an item entity; returns its input sequence (an
    /// ACTION_RESULT answers it).
    std::uint32_t pickup(std::uint32_t item) {
        std::uint32_t seq = 0;
        detail::check(tos_client_pickup(handle_, item, &seq), "tos_client_pickup");
        return seq;
    }

    /// Uses the item in an inventory slot.
    void use_item(std::uint8_t slot) {
        detail::check(tos_client_use_item(handle_, slot), "tos_client_use_item");
    }

    /// Wears the item of an inventory slot in an equipment slot (0..7).
    void equip(std::uint8_t slot, std::uint8_t equip_slot) {
        detail::check(tos_client_equip(handle_, slot, equip_slot), "tos_client_equip");
    }

    /// Takes off what an equipment slot holds.
    void unequip(std::uint8_t equip_slot) {
        detail::check(tos_client_unequip(handle_, equip_slot), "tos_client_unequip");
    }

    /// Chat channels.
    enum class Chat : std::uint8_t { Say = 0, Shout = 1, Whisper = 2 };

    /// Says, shouts or whispers (to `target`) a line of at most 200 bytes.
    void chat(Chat channel, std::string_view text, std::string_view target = {}) {
        const std::string t(text), to(target);
        detail::check(tos_client_chat(handle_, static_cast<std::uint8_t>(channel),
                                      to.empty() ? nullptr : to.c_str(), t.c_str()),
                      "tos_client_chat");
    }

    /// The chat lines received since the last call.
    std::vector<TosChatLine> take_chat() {
        std::vector<TosChatLine> out;
        TosChatLine line{};
        while (tos_client_poll_chat(handle_, &line) == TOS_RESULT_OK) {
            out.push_back(line);
        }
        return out;
    }

    /// The inventory's totals and its occupied slots.
    std::pair<TosInventory, std::vector<TosItem>> inventory() const {
        TosInventory inv{};
        std::vector<TosItem> items(64);
        detail::check(tos_client_inventory(handle_, &inv, items.data(), items.size()),
                      "tos_client_inventory");
        items.resize(inv.item_count);
        return {inv, items};
    }

    /// The character's statistics, once the server sent them.
    std::optional<TosCharacterStats> character_stats() const {
        TosCharacterStats s{};
        const TosResult r = tos_client_character_stats(handle_, &s);
        if (r == TOS_RESULT_NOT_FOUND) {
            return std::nullopt;
        }
        detail::check(r, "tos_client_character_stats");
        return s;
    }

    /// Asks what an entity in view is (an INSPECTED event answers).
    void inspect(std::uint32_t entity) {
        detail::check(tos_client_inspect(handle_, entity), "tos_client_inspect");
    }

    /// What the server said an entity is, once inspected.
    std::optional<TosEntityDetails> entity_details(std::uint32_t entity) const {
        TosEntityDetails d{};
        const TosResult r = tos_client_entity_details(handle_, entity, &d);
        if (r == TOS_RESULT_NOT_FOUND) {
            return std::nullopt;
        }
        detail::check(r, "tos_client_entity_details");
        return d;
    }

    /// The session ticket (empty before login).
    std::vector<std::uint8_t> ticket() const {
        std::size_t len = 0;
        TosResult r = tos_client_ticket(handle_, nullptr, 0, &len);
        if (r == TOS_RESULT_OK) {
            return {};
        }
        if (r != TOS_RESULT_BUFFER_TOO_SMALL) {
            detail::check(r, "tos_client_ticket");
        }
        std::vector<std::uint8_t> t(len);
        detail::check(tos_client_ticket(handle_, t.data(), t.size(), &len), "tos_client_ticket");
        t.resize(len);
        return t;
    }

    /// An entity as it should be drawn now (interpolated `delay_ticks`
    /// behind the estimated server time), if it is in view.
    std::optional<TosEntity> sample(std::uint32_t entity_id, double delay_ticks) const {
        TosEntity e{};
        const TosResult r = tos_client_sample_entity(handle_, entity_id, delay_ticks, &e);
        if (r == TOS_RESULT_NOT_FOUND) {
            return std::nullopt;
        }
        detail::check(r, "tos_client_sample_entity");
        return e;
    }

    /// Counters.
    TosStats stats() const {
        TosStats s{};
        detail::check(tos_client_stats(handle_, &s), "tos_client_stats");
        return s;
    }

    /// Leaves gracefully (the destructor frees the handle).
    void close() {
        const TosResult r = tos_client_close(handle_);
        if (r != TOS_RESULT_CLOSED) {
            detail::check(r, "tos_client_close");
        }
    }

    /// The C handle, for calls this wrapper does not cover.
    TosClient* get() const noexcept { return handle_; }

private:
    TosClient* handle_ = nullptr;
};

}  // namespace tos
