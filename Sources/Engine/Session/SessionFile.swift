import CKernels
import Foundation

/// The session file: the whole state of a conversation, so it resumes exactly where it was.
/// This is the one file that frames it; each stateful part writes and reads its own state
/// (SessionState.swift). Format version 4 (versions 1 to 3 are read too), integers
/// little-endian:
///
///     offset  size  field
///     0       8     magic "SCROLLSN"
///     8       4     version, u32 = 4
///     12      4     header length H, u32 (at most 1 MiB)
///     16      H     header: JSON of `SessionHeader` — the fingerprint (model architecture and
///                   shapes, digests of the tensor table and the vocabulary, and every cache and
///                   RoPE setting that changes what cached keys mean) and a summary for listings
///     16+H    4     CRC-32 (IEEE 802.3) of the H header bytes
///     20+H    …     frames, to the end of the file
///
/// A frame is one save: u32 length S, S bytes of JSON `SessionSummary` (what a listing shows),
/// u64 body length B, u32 CRC-32 of those S + 8 bytes, then the body: B bytes, one zstd frame
/// with its content checksum (XXH64). The first frame holds the whole state; each later one
/// appends what changed since the frame before, so a follow-up question writes the window's
/// new rows and the memory blocks finished since instead of the whole session (a 52K-token
/// session was 460 MB rewritten after every reply, 11–16 s). A body, in order:
///
///     conversation   u32 length + JSON of `SessionConversation`: messages, system prompt,
///                    sampler settings and RNG state
///     history        u64 n0 (the tokens of the frames before; 0 in the first), u64 n, then
///                    the n − n0 new token ids, i32 each
///     logits         u32 count (0 before the first token, else the vocabulary size), f32 each
///     cache          KVCache.writeState: per layer, keys then values, per KV head, the slots
///                    holding positions ≥ n0 as `rows` records (the first frame: all of them)
///     memory         when the fingerprint has one: BlockMemory.writeState (the block being
///                    filled, the new blocks' representative keys, the scorer, the blocks
///                    finished since, the ranking)
///     end            "END!"
///
/// Versions 1 to 3 had no frames: one zstd body to the end of the file, its history a u64 n
/// and n ids (version 1 kept the block being filled at canonical positions; before 3 the
/// scorer's state was not stored).
///
/// A `rows` record is `count` rows of head_dim values (one KV head). With kvEncoding
/// "lossless": the f32 values. With "int8" (the default): the session codec of
/// session_codec.c — int8 codes per channel over groups of 64 tokens, then an f16 (mean,
/// step) per group and channel — about 38% of an f16 state after zstd; memory blocks are
/// dequantized and re-coded this way. An int8 cache (`--kv int8`) is always stored as it is:
/// its codes, then its f32 scales, one per 32 values.
///
/// A whole save streams through zstd in pieces into a temporary file in the same folder,
/// fsynced, then renamed over the old one. An appended frame goes after the last one; a
/// failure cuts the file back to where it was, and a frame cut short (kill -9, power loss) is
/// a save that did not happen: loading stops before it and says so. Either way the previous
/// save survives. Reading builds a fresh cache and only hands it over once every frame has
/// been read: a bad file never touches the conversation in use.
public enum SessionFile {
    public static let magic: [UInt8] = Array("SCROLLSN".utf8)
    public static let version: UInt32 = 4
    static let maxHeaderBytes = 1 << 20
    /// Frames after the first before a save rewrites the file whole (also when they hold
    /// half of the first frame's bytes): loading replays them all.
    static let maxAppended = 32

    /// How KV rows are stored (`--session-kv`).
    public enum KVEncoding: String, Codable, CaseIterable { case int8, lossless }

    /// Where a file stood after this process saved or loaded it: the next save appends to it
    /// when it is still that file and the conversation has only grown since.
    public struct Checkpoint {
        let path: String
        let device: UInt64, inode: UInt64
        let bytes: Int               // the file's size
        let firstFrameBytes: Int     // where the first frame ends
        let frames: Int
        let tokens: Int              // the stream length the file holds
        let historyDigest: UInt64    // of those tokens
        let encoding: KVEncoding
    }

    // MARK: Save

    /// Saves the generator's whole state and the chat to `path`: appended to the file of
    /// `checkpoint` when it still holds the start of this conversation, else written whole,
    /// atomically. Returns where the file now stands.
    @discardableResult
    public static func save(to path: String, generator: Generator, conversation: SessionConversation,
                            encoding requested: KVEncoding = .int8, modelName: String, flags: [String] = [],
                            after checkpoint: Checkpoint? = nil) throws -> Checkpoint {
        let cache = generator.cache
        let encoding: KVEncoding = cache.precision == .int8 ? .int8 : requested
        let summary = SessionSummary(savedAt: Date().timeIntervalSince1970, tokens: cache.tokensSeen,
                                     memoryTokens: cache.memory?.tokens ?? 0, messages: conversation.messages.count,
                                     title: conversation.title)
        do {
            if let c = checkpoint, let fd = appendable(c, path: path, generator: generator, encoding: encoding) {
                return try append(fd, to: c, summary: summary, generator: generator, conversation: conversation)
            }
            let header = SessionHeader(fingerprint: SessionFingerprint(model: generator.model, tokenizer: generator.tokenizer, cache: cache),
                                       model: modelName, summary: summary, kvEncoding: encoding, flags: flags)
            return try saveWhole(to: path, header: header, summary: summary, generator: generator, conversation: conversation)
        } catch let e as Zstd.Failure {
            throw failure(path, e.description)
        } catch let e as FileIO.Failure {
            throw failure(path, e.description)
        } catch is EncodingError {
            throw failure(path, "a record holds a value JSON cannot store (NaN or infinity)")
        }
    }

    private static func saveWhole(to path: String, header: SessionHeader, summary: SessionSummary, generator: Generator,
                                  conversation: SessionConversation) throws -> Checkpoint {
        let directory = (path as NSString).deletingLastPathComponent
        let temporary = (directory.isEmpty ? "." : directory) + "/.\((path as NSString).lastPathComponent).saving-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure(path, "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var done = false
        defer {
            if !done { close(fd); unlink(temporary) }
        }
        let headerBytes = Array(try JSONEncoder().encode(header))
        var prefix = magic
        prefix += bytes(of: version) + bytes(of: UInt32(headerBytes.count)) + headerBytes + bytes(of: crc32(headerBytes))
        try prefix.withUnsafeBytes { try FileIO.writeAll(fd, $0) }
        try writeFrame(fd, at: prefix.count, summary: summary, since: 0, generator: generator, conversation: conversation, encoding: header.kvEncoding)
        guard fsync(fd) == 0 else { throw Zstd.Failure(description: "fsync failed: \(String(cString: strerror(errno)))") }
        var st = stat()
        fstat(fd, &st)
        close(fd)
        done = true
        guard rename(temporary, path) == 0 else {
            let why = String(cString: strerror(errno))
            unlink(temporary)
            throw failure(path, "cannot rename into place: \(why)")
        }
        // The rename itself is durable once the folder is synced.
        let dirFD = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY)
        if dirFD >= 0 { fsync(dirFD); close(dirFD) }
        return Checkpoint(path: path, device: UInt64(st.st_dev), inode: UInt64(st.st_ino), bytes: Int(st.st_size),
                          firstFrameBytes: Int(st.st_size), frames: 1, tokens: generator.history.count,
                          historyDigest: digest(generator.history[...]), encoding: header.kvEncoding)
    }

    /// The file of `c`, opened for appending, when it is still as this process left it, the
    /// conversation has only grown since, and the frames appended so far are few and small.
    private static func appendable(_ c: Checkpoint, path: String, generator: Generator, encoding: KVEncoding) -> Int32? {
        let history = generator.history
        guard c.path == path, c.encoding == encoding, c.frames <= maxAppended, c.bytes - c.firstFrameBytes < c.firstFrameBytes / 2,
              history.count >= c.tokens, digest(history[..<c.tokens]) == c.historyDigest else { return nil }
        let fd = open(path, O_WRONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, UInt64(st.st_dev) == c.device, UInt64(st.st_ino) == c.inode,
              Int(st.st_size) == c.bytes, lseek(fd, off_t(c.bytes), SEEK_SET) == off_t(c.bytes) else { close(fd); return nil }
        return fd
    }

    private static func append(_ fd: Int32, to c: Checkpoint, summary: SessionSummary, generator: Generator,
                               conversation: SessionConversation) throws -> Checkpoint {
        defer { close(fd) }
        do {
            let bytes = try writeFrame(fd, at: c.bytes, summary: summary, since: c.tokens, generator: generator,
                                       conversation: conversation, encoding: c.encoding)
            guard fsync(fd) == 0 else { throw Zstd.Failure(description: "fsync failed: \(String(cString: strerror(errno)))") }
            return Checkpoint(path: c.path, device: c.device, inode: c.inode, bytes: c.bytes + bytes, firstFrameBytes: c.firstFrameBytes,
                              frames: c.frames + 1, tokens: generator.history.count, historyDigest: digest(generator.history[...]),
                              encoding: c.encoding)
        } catch {
            // What was appended goes: the file is again the previous save.
            _ = ftruncate(fd, off_t(c.bytes))
            _ = fsync(fd)
            throw error
        }
    }

    /// Writes one frame at offset `at` (where the descriptor stands); returns its bytes.
    @discardableResult
    private static func writeFrame(_ fd: Int32, at start: Int, summary: SessionSummary, since n0: Int, generator: Generator,
                                   conversation: SessionConversation, encoding: KVEncoding) throws -> Int {
        let json = Array(try JSONEncoder().encode(summary))
        try (bytes(of: UInt32(json.count)) + json + [UInt8](repeating: 0, count: 12)).withUnsafeBytes { try FileIO.writeAll(fd, $0) }
        let w = try BodyWriter(fd: fd)
        try writeBody(w, since: n0, generator: generator, conversation: conversation, encoding: encoding)
        try w.finish()
        // The body's length and the frame head's checksum, now that the body is written.
        let lengthBytes = bytes(of: UInt64(w.bytesWritten))
        let patch = lengthBytes + bytes(of: crc32(json + lengthBytes))
        try patch.withUnsafeBytes { try FileIO.writeAll(fd, $0, at: start + 4 + json.count) }
        return 4 + json.count + 12 + w.bytesWritten
    }

    private static func writeBody(_ w: BodyWriter, since n0: Int, generator: Generator, conversation: SessionConversation,
                                  encoding: KVEncoding) throws {
        let cache = generator.cache
        let json = Array(try JSONEncoder().encode(conversation))
        try w.put(UInt32(json.count)); try w.put(bytes: json)
        try w.put(UInt64(n0)); try w.put(UInt64(generator.history.count))
        try w.put(array: generator.history[n0...].map { Int32($0) })
        let logits = generator.lastLogits.map(Array.init) ?? []
        try w.put(UInt32(logits.count)); try w.put(array: logits)
        let codec = RowCodec(rows: max(cache.capacity, cache.memory?.settings.blockSize ?? 0), headDim: cache.headDim, encoding: encoding)
        try cache.writeState(w, since: n0, codec: codec)
        try cache.memory?.writeState(w, since: n0, capacity: cache.capacity, codec: codec)
        try w.put(bytes: Array("END!".utf8))
    }

    /// FNV-1a 64 of token ids: whether the history a checkpoint saw is still the start of this one.
    private static func digest(_ ids: ArraySlice<Int>) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for id in ids { h = (h ^ UInt64(UInt32(truncatingIfNeeded: id))) &* 0x100_0000_01b3 }
        return h
    }

    // MARK: Load

    /// What a session file holds, read into a fresh cache that has not been used yet.
    public struct Contents {
        public let header: SessionHeader
        public let conversation: SessionConversation
        public let cache: KVCache
        public let history: [Int]
        public let logits: [Float]
        /// Where the file stands, for the next save to append to.
        public let checkpoint: Checkpoint
        /// A last frame was cut short (the process ended while it was appended): the state is
        /// the save before it.
        public let interruptedSave: Bool
    }

    /// Reads the header, its summary from the last whole frame (for listings, and to check
    /// the fingerprint early).
    public static func header(at path: String) throws -> SessionHeader {
        let fd = try openForReading(path)
        defer { close(fd) }
        var (header, version) = try readVersionedHeader(fd, path)
        if version >= 4 {
            var frames = FrameWalker(fd: fd, path: path)
            while let frame = try frames.next() {
                header.summary = frame.summary
                lseek(fd, off_t(frame.end), SEEK_SET)
            }
        }
        return header
    }

    /// Reads the header and the latest conversation record only (for `scroll sessions show`).
    public static func conversation(at path: String) throws -> (SessionHeader, SessionConversation) {
        let fd = try openForReading(path)
        defer { close(fd) }
        var (header, version) = try readVersionedHeader(fd, path)
        var bodyStart: off_t? = version >= 4 ? nil : lseek(fd, 0, SEEK_CUR)
        var limit = Int.max
        if version >= 4 {
            var frames = FrameWalker(fd: fd, path: path)
            while let frame = try frames.next() {
                header.summary = frame.summary
                (bodyStart, limit) = (off_t(frame.bodyStart), frame.end - frame.bodyStart)
                lseek(fd, off_t(frame.end), SEEK_SET)
            }
        }
        guard let bodyStart else { throw damaged(path, "no complete save in it") }
        lseek(fd, bodyStart, SEEK_SET)
        do {
            let r = try BodyReader(fd: fd, limit: limit)
            let json = try r.bytes(count: Int(try r.get(UInt32.self)), limit: 1 << 30)
            return (header, try JSONDecoder().decode(SessionConversation.self, from: Data(json)))
        } catch is Zstd.Failure {
            throw damaged(path, "conversation record unreadable")
        } catch is DecodingError {
            throw damaged(path, "conversation record unreadable")
        }
    }

    /// Reads the session at `path` into `freshCache` (made like the cache in use). Throws a
    /// one-line error naming the problem if the file is not a session, is damaged, or was
    /// made with another model or other cache settings; `freshCache` is then discarded.
    public static func load(from path: String, model: Transformer, tokenizer: Tokenizer, freshCache cache: KVCache) throws -> Contents {
        let fd = try openForReading(path)
        defer { close(fd) }
        var (header, version) = try readVersionedHeader(fd, path)
        let expected = SessionFingerprint(model: model, tokenizer: tokenizer, cache: cache)
        if let difference = header.fingerprint.difference(from: expected) {
            throw failure(path, difference, loading: true)
        }
        if cache.precision == .int8 && header.kvEncoding != .int8 { throw failure(path, "KV encoding does not match the int8 cache", loading: true) }
        do {
            let codec = RowCodec(rows: max(cache.capacity, cache.memory?.settings.blockSize ?? 0), headDim: cache.headDim, encoding: header.kvEncoding)
            var state = State()
            var frames = FrameWalker(fd: fd, path: path)
            var firstFrameEnd = 0, end = 0, count = 0
            if version < 4 {
                let r = try BodyReader(fd: fd)
                try readBody(r, into: &state, cache: cache, model: model, codec: codec, version: version)
                try r.finish()
                end = Int(lseek(fd, 0, SEEK_CUR))
            }
            while version >= 4, let frame = try frames.next() {
                let r = try BodyReader(fd: fd, limit: frame.end - frame.bodyStart)
                try readBody(r, into: &state, cache: cache, model: model, codec: codec, version: version)
                try r.finish()
                guard state.history.count == frame.summary.tokens else {
                    throw Zstd.Failure(description: "history holds \(state.history.count) tokens, its summary says \(frame.summary.tokens)")
                }
                header.summary = frame.summary
                (end, count) = (frame.end, count + 1)
                if count == 1 { firstFrameEnd = end }
            }
            guard let conversation = state.conversation else { throw Zstd.Failure(description: "no complete save in it (truncated)") }
            // A version 1–3 file is never appended to: its checkpoint has too many frames, so
            // the next save writes it whole in the current format.
            var st = stat()
            fstat(fd, &st)
            let checkpoint = Checkpoint(path: path, device: UInt64(st.st_dev), inode: UInt64(st.st_ino), bytes: end,
                                        firstFrameBytes: version < 4 ? end : firstFrameEnd, frames: version < 4 ? Int.max : count,
                                        tokens: state.history.count, historyDigest: digest(state.history[...]), encoding: header.kvEncoding)
            return Contents(header: header, conversation: conversation, cache: cache, history: state.history, logits: state.logits,
                            checkpoint: checkpoint, interruptedSave: frames.torn)
        } catch let e as Zstd.Failure {
            throw damaged(path, e.description)
        } catch let e as FileIO.Failure {
            throw failure(path, e.description, loading: true)
        } catch is DecodingError {
            throw damaged(path, "conversation record unreadable")
        }
    }

    /// The state read so far: the latest conversation and logits, the whole history.
    private struct State {
        var conversation: SessionConversation?
        var history: [Int] = []
        var logits: [Float] = []
    }

    /// Reads one body (a frame's, or a version 1–3 file's) on top of `state` and `cache`.
    private static func readBody(_ r: BodyReader, into state: inout State, cache: KVCache, model: Transformer, codec: RowCodec,
                                 version: UInt32) throws {
        let conversation = try JSONDecoder().decode(SessionConversation.self, from: Data(try r.bytes(count: Int(try r.get(UInt32.self)), limit: 1 << 30)))
        if let problem = conversation.sampler.problem { throw Zstd.Failure(description: "sampler: \(problem)") }
        let n0 = version >= 4 ? try r.length() : 0
        let n = try r.length()
        guard n0 == state.history.count, n >= n0, n < 1 << 40 else {
            throw Zstd.Failure(description: "the record continues from \(n0) tokens to \(n), the session holds \(state.history.count)")
        }
        guard cache.policy.window != nil || n <= cache.capacity else { throw Zstd.Failure(description: "more tokens than the dense cache holds") }
        let added = try r.array(Int32.self, count: n - n0)
        guard added.allSatisfy({ $0 >= 0 && Int($0) < model.config.vocabSize }) else { throw Zstd.Failure(description: "token id out of range") }
        state.history += added.map { Int($0) }
        let logitCount = Int(try r.get(UInt32.self))
        guard logitCount == (n == 0 ? 0 : model.config.vocabSize) else { throw Zstd.Failure(description: "logits have the wrong size") }
        state.logits = try r.array(Float.self, count: logitCount)
        try state.logits.withUnsafeBufferPointer { try requireFinite($0, "logits") }
        cache.restore(tokensSeen: n)
        try cache.readState(r, since: n0, codec: codec)
        try cache.memory?.readState(r, since: n0, tokens: n, capacity: cache.capacity, sinks: cache.policy.sinks, codec: codec, version: version)
        guard try r.bytes(count: 4, limit: 4) == Array("END!".utf8) else { throw Zstd.Failure(description: "end marker missing") }
        state.conversation = conversation
    }

    /// Steps through a version 4 file's frames from the descriptor's offset: each whole
    /// frame's head, its checksum checked; nil at the end, or at a frame cut short (`torn`).
    private struct FrameWalker {
        struct Frame {
            let summary: SessionSummary
            let bodyStart: Int, end: Int
        }
        let fd: Int32, path: String
        private(set) var torn = false
        private let size: Int

        init(fd: Int32, path: String) {
            self.fd = fd
            self.path = path
            var st = stat()
            size = fstat(fd, &st) == 0 ? Int(st.st_size) : 0
        }

        mutating func next() throws -> Frame? {
            let start = Int(lseek(fd, 0, SEEK_CUR))
            guard start < size else { return nil }
            func read(_ n: Int) throws -> [UInt8]? {
                do { return try FileIO.readBytes(fd, n) } catch { throw SessionFile.failure(path, "\(error)", loading: true) }
            }
            func u<T: FixedWidthInteger>(_ b: [UInt8], _: T.Type) -> T { b.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(as: T.self)) } }
            guard let s = try read(4) else { torn = true; return nil }
            let length = Int(u(s, UInt32.self))
            guard length <= SessionFile.maxHeaderBytes else { throw SessionFile.damaged(path, "a save's summary of \(length) bytes") }
            guard let json = try read(length), let tail = try read(12) else { torn = true; return nil }
            let bodyBytes = u(Array(tail[..<8]), UInt64.self)
            guard u(Array(tail[8...]), UInt32.self) == SessionFile.crc32(json + tail[..<8]) else {
                // A head never finished (its length and checksum are written last) at the end
                // of the file is a save cut short; anywhere else it is damage.
                if bodyBytes == 0 && u(Array(tail[8...]), UInt32.self) == 0 { torn = true; return nil }
                throw SessionFile.damaged(path, "a save's checksum does not match")
            }
            let bodyStart = start + 4 + length + 12
            guard bodyBytes <= UInt64(size - bodyStart) else { torn = true; return nil }
            guard let summary = try? JSONDecoder().decode(SessionSummary.self, from: Data(json)) else {
                throw SessionFile.damaged(path, "a save's summary is unreadable")
            }
            return Frame(summary: summary, bodyStart: bodyStart, end: bodyStart + Int(bodyBytes))
        }
    }

    // MARK: Pieces

    /// A NaN or infinity in a loaded cache spreads through every later attention, and one in a
    /// saved score made every later save fail; refused here with the record's name.
    static func requireFinite(_ values: UnsafeBufferPointer<Float>, _ what: String) throws {
        guard values.allSatisfy({ $0.isFinite }) else { throw Zstd.Failure(description: "non-finite \(what) (NaN or infinity)") }
    }

    private static func openForReading(_ path: String) throws -> Int32 {
        // O_NONBLOCK: a FIFO under a session's name must not hang the open; only regular files
        // are read, and then in blocking mode again.
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { throw failure(path, errno == ENOENT ? "no such session" : String(cString: strerror(errno)), loading: true) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw failure(path, st.st_mode & S_IFMT == S_IFDIR ? "is a folder" : "is not a regular file", loading: true)
        }
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK)
        return fd
    }


    private static func readVersionedHeader(_ fd: Int32, _ path: String) throws -> (SessionHeader, UInt32) {
        var empty = true
        func read(_ n: Int) throws -> [UInt8] {
            let read: [UInt8]?
            do { read = try FileIO.readBytes(fd, n) } catch { throw failure(path, "\(error)", loading: true) }
            guard let bytes = read else {
                throw failure(path, empty && n == 8 ? "empty file, not a session" : "truncated header", loading: true)
            }
            empty = false
            return bytes
        }
        guard try read(8) == magic else { throw failure(path, "not a Scroll session file (bad magic)", loading: true) }
        let fixed = try read(8)
        let version = UInt32(littleEndian: fixed.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
        guard (1...Self.version).contains(version) else {
            throw failure(path, "session format version \(version), this Scroll reads versions 1 to \(Self.version)", loading: true)
        }
        let length = Int(UInt32(littleEndian: fixed.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self) }))
        guard length <= maxHeaderBytes else { throw damaged(path, "header length \(length) is implausible") }
        let json = try read(length)
        let crc = try read(4).withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
        guard crc == crc32(json) else { throw damaged(path, "header checksum mismatch") }
        guard let header = try? JSONDecoder().decode(SessionHeader.self, from: Data(json)) else {
            throw damaged(path, "header unreadable")
        }
        return (header, version)
    }

    static func failure(_ path: String, _ why: String, loading: Bool = false) -> EngineError {
        .invalidArgument("cannot \(loading ? "load" : "save") session \(path): \(why)")
    }

    /// A session file whose content is damaged (bad checksum, impossible values, cut short),
    /// as against one that is missing, foreign or made with other settings.
    static func damaged(_ path: String, _ what: String) -> EngineError { .damagedSession(path, what) }

    private static func bytes<T: FixedWidthInteger>(of value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    private static let crcTable: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// CRC-32 as zlib computes it (reflected, polynomial 0xEDB88320).
    static func crc32(_ data: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for byte in data { c = crcTable[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }
}
