// Tales of Shadowland client SDK: C# P/Invoke bindings for Unity (and any
// .NET), over the C ABI of client/include/tos_client.h.
//
// NOT COMPILED HERE: the machine this SDK is built and tested on has no C#
// compiler (no mcs, csc or dotnet), so this file is checked by review
// against the header and the struct layouts the Rust test
// client/tests/ffi.rs pins (TosEntity 60 bytes, TosEvent 136, TosStats 40,
// TosConnectParams 88 on 64-bit). docs/CLIENT.md says how to use it.
//
// Unity: put libtos_client.so / tos_client.dll / libtos_client.dylib under
// Assets/Plugins/<platform>/ (iOS: the static library, with
// LibraryName = "__Internal"), this file anywhere under Assets/, and call
// Client.Poll once per frame from a MonoBehaviour's Update.
//
// TosCharacter uses a fixed buffer: enable "Allow 'unsafe' code" in the
// assembly (Unity: Player Settings) or move it to an asmdef that allows it.
//
// Ownership: a Client owns its native handle and frees it in Dispose (or
// the finalizer). Arrays and strings passed in are copied or pinned for
// the call only.
using System;
using System.Runtime.InteropServices;
using System.Text;

namespace Tos
{
    /// <summary>TosResult: 0 success, negative errors.</summary>
    public enum TosResult : int
    {
        Ok = 0,
        NullPointer = -1,
        BadHandle = -2,
        InvalidArgument = -3,
        Closed = -4,
        NotInWorld = -5,
        BufferTooSmall = -6,
        NotFound = -7,
        Io = -8,
        SendFailed = -9,
        Panic = -10,
        NotSelecting = -11,
        Transferring = -12,
    }

    /// <summary>TosEventKind.</summary>
    public enum TosEventKind : uint
    {
        Connected = 1,
        Authenticated = 2,
        CharacterCreated = 3,
        EnteredWorld = 4,
        EntityCreated = 5,
        EntityUpdated = 6,
        EntityRemoved = 7,
        Snapshot = 8,
        Correction = 9,
        ActionResult = 10,
        Refused = 11,
        LoginFailed = 12,
        Denied = 13,
        Disconnected = 14,
        CharacterList = 15,
        InventoryChanged = 16,
        StatsChanged = 17,
        Combat = 18,
        Chat = 19,
        Inspected = 20,
        ZoneTransferStarted = 21,
        ZoneTransferred = 22,
        ZoneTransferFailed = 23,
    }

    /// <summary>TosEntityDetails (52 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct TosEntityDetails
    {
        public uint EntityType;
        public uint Template;
        public uint Level;
        public uint Count;
        public fixed byte Name[33];
    }

    /// <summary>TosItem (12 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct TosItem
    {
        public uint Slot;
        public uint Template;
        public uint Count;
    }

    /// <summary>TosInventory (48 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct TosInventory
    {
        public uint Capacity;
        public uint Weight;
        public uint WeightLimit;
        public uint ItemCount;
        /// <summary>Per equipment slot (0 weapon .. 7 accessory): the template worn, 0 if none.</summary>
        public fixed uint Equipped[8];
    }

    /// <summary>TosCharacterStats (72 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct TosCharacterStats
    {
        public uint Level;
        public uint Cause;
        public ulong Exp;
        public ulong ExpNext;
        public float HpMax;
        public float MpMax;
        /// <summary>INT, STR, CON, MEN, DEX, WIT.</summary>
        public fixed uint Stats[6];
        public float PAtk;
        public float MAtk;
        public float PDef;
        public float MDef;
    }

    /// <summary>TosChatLine (240 bytes): NUL-terminated UTF-8 in fixed arrays.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct TosChatLine
    {
        public uint Channel;
        public fixed byte From[33];
        public fixed byte Text[201];
    }

    /// <summary>TosCharacter (88 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public unsafe struct TosCharacter
    {
        public ulong CharacterId;
        /// <summary>NUL-terminated UTF-8; read it with Name().</summary>
        public fixed byte NameBytes[48];
        public ushort Template;
        public ushort Level;
        public byte Faction;
        public byte Reserved0, Reserved1, Reserved2;
        public ulong DeletedAt;
        public TosVec3 Position;

        public string Name()
        {
            fixed (byte* p = NameBytes)
            {
                int n = 0;
                while (n < 48 && p[n] != 0) n++;
                return Encoding.UTF8.GetString(p, n);
            }
        }
    }

    /// <summary>float[3] (world units; Unity: new Vector3(X, Z, Y) / 100 for metres, Y up).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct TosVec3
    {
        public float X, Y, Z;
        public TosVec3(float x, float y, float z) { X = x; Y = y; Z = z; }
    }

    /// <summary>TosEntity (60 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct TosEntity
    {
        public uint Id;
        public uint EntityType;
        public uint Tick;
        public TosVec3 Position;
        public TosVec3 Velocity;
        /// <summary>Pitch, yaw, roll in degrees.</summary>
        public TosVec3 Rotation;
        public byte Anim;
        public byte State;
        public byte Buffs;
        public byte Reserved;
        public float Hp;
        public float Mp;
    }

    /// <summary>TosEvent (152 bytes); which fields mean something depends on Kind.</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct TosEvent
    {
        public TosEventKind Kind;
        public uint Tick;
        public uint InputSeq;
        public uint Code;
        public uint Request;
        public uint Reserved;
        public ulong Id;
        public ulong ExpiresAt;
        public TosEntity Entity;
        public TosVec3 Position;
        public TosVec3 Velocity;
        public TosVec3 Predicted;
        /// <summary>Combat: who acted, whom it hit, how much.</summary>
        public uint Source;
        public uint Target;
        public float Amount;
        public uint Reserved2;
    }

    /// <summary>TosStats (40 bytes).</summary>
    [StructLayout(LayoutKind.Sequential)]
    public struct TosStats
    {
        public float RttMs;
        public uint EntitiesInView;
        public uint PendingInputs;
        public uint Reserved;
        public ulong PacketsSent;
        public ulong PacketsReceived;
        public ulong Snapshots;
    }

    /// <summary>TosConnectParams (88 bytes on 64-bit). Pointers are IntPtr: Client fills it.</summary>
    [StructLayout(LayoutKind.Sequential)]
    internal struct TosConnectParams
    {
        public IntPtr ServerAddr;
        public IntPtr ServerKey;
        public IntPtr Account;
        public IntPtr Password;
        public IntPtr CharacterName;
        public ushort CharacterTemplate;
        public byte RegisterAccount;
        public byte ChooseCharacter;
        public IntPtr Ticket;
        public UIntPtr TicketLen;
        public IntPtr IntegrityTable;
        public ushort IntegrityVersion;
        public uint TickHz;
        public uint HandshakeTimeoutMs;
    }

    /// <summary>The raw C functions.</summary>
    public static class Native
    {
#if UNITY_IOS && !UNITY_EDITOR
        public const string LibraryName = "__Internal";
#else
        public const string LibraryName = "tos_client";
#endif

        /// <summary>TOS_INTEGRITY_TABLE_BYTES.</summary>
        public const int IntegrityTableBytes = 4096;

        [DllImport(LibraryName)] public static extern IntPtr tos_version();
        [DllImport(LibraryName)] public static extern TosResult tos_integrity_table(byte[] secret32, ushort version, byte[] out4096, UIntPtr cap);
        [DllImport(LibraryName)] public static extern IntPtr tos_last_error();
        [DllImport(LibraryName)] public static extern TosResult tos_parse_key_hex(byte[] hexNulTerminated, byte[] out32);
        [DllImport(LibraryName)] internal static extern TosResult tos_client_connect(ref TosConnectParams p, out IntPtr client);
        [DllImport(LibraryName)] public static extern TosResult tos_client_poll(IntPtr client, [Out] TosEvent[] events, UIntPtr cap, out UIntPtr count);
        [DllImport(LibraryName)] public static extern TosResult tos_client_move(IntPtr client, float[] position3, float[] velocity3, float yaw, byte anim, float dt, out uint seq);
        [DllImport(LibraryName)] public static extern TosResult tos_client_character(IntPtr client, UIntPtr index, out TosCharacter character);
        [DllImport(LibraryName)] public static extern TosResult tos_client_enter_character(IntPtr client, ulong characterId);
        [DllImport(LibraryName)] public static extern TosResult tos_client_create_character(IntPtr client, byte[] nameNulTerminated, ushort template, byte[] appearance, UIntPtr appearanceLen);
        [DllImport(LibraryName)] public static extern TosResult tos_client_action(IntPtr client, ushort actionId, uint target, out uint seq);
        [DllImport(LibraryName)] public static extern TosResult tos_client_pickup(IntPtr client, uint item, out uint seq);
        [DllImport(LibraryName)] public static extern TosResult tos_client_use_item(IntPtr client, byte slot);
        [DllImport(LibraryName)] public static extern TosResult tos_client_equip(IntPtr client, byte slot, byte equipSlot);
        [DllImport(LibraryName)] public static extern TosResult tos_client_unequip(IntPtr client, byte equipSlot);
        [DllImport(LibraryName)] public static extern TosResult tos_client_chat(IntPtr client, byte channel, byte[] target, byte[] text);
        [DllImport(LibraryName)] public static extern TosResult tos_client_inventory(IntPtr client, out TosInventory inventory, [Out] TosItem[] items, UIntPtr cap);
        [DllImport(LibraryName)] public static extern TosResult tos_client_character_stats(IntPtr client, out TosCharacterStats stats);
        [DllImport(LibraryName)] public static extern TosResult tos_client_poll_chat(IntPtr client, out TosChatLine line);
        [DllImport(LibraryName)] public static extern TosResult tos_client_inspect(IntPtr client, uint entity);
        [DllImport(LibraryName)] public static extern TosResult tos_client_entity_details(IntPtr client, uint entity, out TosEntityDetails details);
        [DllImport(LibraryName)] public static extern TosResult tos_client_ticket(IntPtr client, byte[] buf, UIntPtr cap, out UIntPtr len);
        [DllImport(LibraryName)] public static extern TosResult tos_client_sample_entity(IntPtr client, uint entityId, double delayTicks, out TosEntity entity);
        [DllImport(LibraryName)] public static extern TosResult tos_client_server_tick(IntPtr client, out double tick);
        [DllImport(LibraryName)] public static extern TosResult tos_client_stats(IntPtr client, out TosStats stats);
        [DllImport(LibraryName)] public static extern TosResult tos_client_close(IntPtr client);
        [DllImport(LibraryName)] public static extern void tos_client_free(IntPtr client);

        /// <summary>UTF-8 bytes with a trailing NUL.</summary>
        public static byte[] Utf8z(string s)
        {
            var b = Encoding.UTF8.GetBytes(s ?? "");
            Array.Resize(ref b, b.Length + 1);
            return b;
        }

        /// <summary>The last error message of this thread.</summary>
        public static string LastError()
        {
            IntPtr p = tos_last_error();
            if (p == IntPtr.Zero) return "";
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            var bytes = new byte[n];
            Marshal.Copy(p, bytes, 0, n);
            return Encoding.UTF8.GetString(bytes);
        }
    }

    /// <summary>A failed call.</summary>
    public class TosException : Exception
    {
        public readonly TosResult Code;
        public TosException(TosResult code, string what) : base(what + ": " + Native.LastError()) { Code = code; }
    }

    /// <summary>One connection to a world server. Poll it once per frame.</summary>
    public sealed class Client : IDisposable
    {
        IntPtr handle;
        readonly TosEvent[] buffer = new TosEvent[256];

        static void Check(TosResult r, string what)
        {
            if (r != TosResult.Ok) throw new TosException(r, what);
        }

        /// <summary>Parses the 64 hex digits the server logs.</summary>
        public static byte[] ParseKey(string hex)
        {
            var key = new byte[32];
            Check(Native.tos_parse_key_hex(Native.Utf8z(hex), key), "tos_parse_key_hex");
            return key;
        }

        /// <summary>Connects; login and entering proceed as Poll is called.</summary>
        public Client(string serverAddr, byte[] serverKey, string account, string password,
                      bool registerAccount = true, string characterName = null, ushort characterTemplate = 1,
                      byte[] ticket = null, byte[] integrityTable = null, ushort integrityVersion = 1,
                      uint tickHz = 60, bool chooseCharacter = false)
        {
            if (serverKey == null || serverKey.Length != 32) throw new ArgumentException("serverKey must be 32 bytes");
            if (integrityTable != null && integrityTable.Length != Native.IntegrityTableBytes) throw new ArgumentException("integrityTable must be 4096 bytes");
            var pins = new System.Collections.Generic.List<GCHandle>();
            IntPtr Pin(object o)
            {
                if (o == null) return IntPtr.Zero;
                var h = GCHandle.Alloc(o, GCHandleType.Pinned);
                pins.Add(h);
                return h.AddrOfPinnedObject();
            }
            try
            {
                var p = new TosConnectParams
                {
                    ServerAddr = Pin(Native.Utf8z(serverAddr)),
                    ServerKey = Pin(serverKey),
                    Account = Pin(Native.Utf8z(account)),
                    Password = Pin(Native.Utf8z(password)),
                    CharacterName = characterName == null ? IntPtr.Zero : Pin(Native.Utf8z(characterName)),
                    CharacterTemplate = characterTemplate,
                    RegisterAccount = (byte)(registerAccount ? 1 : 0),
                    ChooseCharacter = (byte)(chooseCharacter ? 1 : 0),
                    Ticket = ticket == null || ticket.Length == 0 ? IntPtr.Zero : Pin(ticket),
                    TicketLen = new UIntPtr((uint)(ticket == null ? 0 : ticket.Length)),
                    IntegrityTable = Pin(integrityTable),
                    IntegrityVersion = integrityVersion,
                    TickHz = tickHz,
                };
                Check(Native.tos_client_connect(ref p, out handle), "tos_client_connect");
            }
            finally
            {
                foreach (var h in pins) h.Free();
            }
        }

        /// <summary>Pumps the connection; returns the events (a segment of an
        /// internal buffer, valid until the next Poll), or null once the session ended.</summary>
        public ArraySegment<TosEvent>? Poll()
        {
            var r = Native.tos_client_poll(handle, buffer, new UIntPtr((uint)buffer.Length), out UIntPtr n);
            if (r == TosResult.Closed) return null;
            Check(r, "tos_client_poll");
            return new ArraySegment<TosEvent>(buffer, 0, (int)n.ToUInt64());
        }

        /// <summary>Claims a move; returns its input sequence, or 0 (nothing sent) during a
        /// zone transfer: claims supersede each other, so keep moving.</summary>
        public uint Move(TosVec3 position, TosVec3 velocity, float yawDegrees, byte anim, float dt)
        {
            var r = Native.tos_client_move(handle, new[] { position.X, position.Y, position.Z },
                new[] { velocity.X, velocity.Y, velocity.Z }, yawDegrees, anim, dt, out uint seq);
            if (r == TosResult.Transferring) return 0;
            Check(r, "tos_client_move");
            return seq;
        }

        /// <summary>The characters of the last CharacterList event (its Code is the count).</summary>
        public TosCharacter[] Characters(uint count)
        {
            var list = new System.Collections.Generic.List<TosCharacter>();
            for (uint i = 0; i < count; i++)
            {
                if (Native.tos_client_character(handle, new UIntPtr(i), out TosCharacter c) != TosResult.Ok) break;
                list.Add(c);
            }
            return list.ToArray();
        }

        public void EnterCharacter(ulong characterId)
        {
            Check(Native.tos_client_enter_character(handle, characterId), "tos_client_enter_character");
        }

        public void CreateCharacter(string name, ushort template, byte[] appearance = null)
        {
            Check(Native.tos_client_create_character(handle, Native.Utf8z(name), template, appearance,
                new UIntPtr((uint)(appearance == null ? 0 : appearance.Length))), "tos_client_create_character");
        }

        /// <summary>Asks for an action; returns its input sequence.</summary>
        public uint Action(ushort actionId, uint target)
        {
            Check(Native.tos_client_action(handle, actionId, target, out uint seq), "tos_client_action");
            return seq;
        }

        /// <summary>The session ticket (empty before login).</summary>
        public byte[] Ticket()
        {
            var r = Native.tos_client_ticket(handle, null, UIntPtr.Zero, out UIntPtr len);
            if (r == TosResult.Ok) return new byte[0];
            if (r != TosResult.BufferTooSmall) Check(r, "tos_client_ticket");
            var t = new byte[(int)len.ToUInt64()];
            Check(Native.tos_client_ticket(handle, t, new UIntPtr((uint)t.Length), out len), "tos_client_ticket");
            return t;
        }

        /// <summary>An entity as it should be drawn now, if in view.</summary>
        public TosEntity? Sample(uint entityId, double delayTicks = 3.0)
        {
            var r = Native.tos_client_sample_entity(handle, entityId, delayTicks, out TosEntity e);
            if (r == TosResult.NotFound) return null;
            Check(r, "tos_client_sample_entity");
            return e;
        }

        public TosStats Stats()
        {
            Check(Native.tos_client_stats(handle, out TosStats s), "tos_client_stats");
            return s;
        }

        /// <summary>Leaves gracefully.</summary>
        public void Close()
        {
            var r = Native.tos_client_close(handle);
            if (r != TosResult.Closed) Check(r, "tos_client_close");
        }

        public void Dispose()
        {
            Native.tos_client_free(handle);
            handle = IntPtr.Zero;
            GC.SuppressFinalize(this);
        }

        ~Client() { Native.tos_client_free(handle); }
    }
}
