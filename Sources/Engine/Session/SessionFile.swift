import CKernels
import Foundation

/// The session file: the whole state of a conversation, so it resumes exactly where it was.
/// This is the one file that reads and writes it. Format version 3 (versions 1 and 2 are read too),
/// integers little-endian:
///
///     offset  size  field
///     0       8     magic "SCROLLSN"
///     8       4     version, u32 = 3
///     12      4     header length H, u32 (at most 1 MiB)
///     16      H     header: JSON of `SessionHeader` — the fingerprint (model architecture and
///                   shapes, digests of the tensor table and the vocabulary, and every cache and
///                   RoPE setting that changes what cached keys mean) and a summary for listings
///     16+H    4     CRC-32 (IEEE 802.3) of the H header bytes
///     20+H    …     body: one zstd frame with its content checksum (XXH64), to the end of the file
///
/// The body, in order (counts the reader can derive are not stored, they are checked):
///
///     conversation   u32 length + JSON of `SessionConversation`: messages, system prompt,
///                    sampler settings and RNG state
///     history        u64 n = tokens seen, then n × i32 token ids
///     logits         u32 count (0 before the first token, else the vocabulary size), f32 each
///     cache          for each layer, for each KV head: the keys then the values of the cache's
///                    count = min(n, capacity) slots, slot order (slot → position follows from n
///                    and the policy: KVCache.slot(ofPosition:)), each as a `rows` record
///     memory         when the fingerprint has one: for each layer, the block being filled
///                    (n_memory mod blockSize tokens, n_memory = max(0, n − capacity), at
///                    positions sinks + blocks·blockSize + i; per KV head its keys as
///                    BlockMemory holds them — `.chronological`: rotated at those positions;
///                    version 1 had them at BlockMemory's canonical positions — and its values,
///                    as `rows`), the representative keys of its blocks (f32
///                    [block][kv_head][head_dim]), and (version 3) what RepresentativeScorer
///                    holds: the scores of the block being filled (f32 [kv_head][its
///                    tokens]) and the ring of query sums (f32 [ringSize][kv_head][head_dim];
///                    which block each slot holds follows from n); then each finished block, per layer: per
///                    keys/values and KV head a `rows` record of its blockSize rows ("int8"),
///                    or its blob as BlockMemory packs it ("lossless"); then u32 length + JSON
///                    of `RankingState` (what each layer and KV head recalled last)
///     end            "END!"
///
/// A `rows` record is `count` rows of head_dim values (one KV head). With kvEncoding
/// "lossless": the f32 values. With "int8" (the default): the session codec of
/// session_codec.c — int8 codes per channel over groups of 64 tokens, then an f16 (mean,
/// step) per group and channel — about 38% of an f16 state after zstd; memory blocks are
/// dequantized and re-coded this way. An int8 cache (`--kv int8`) is always stored as it is:
/// its codes, then its f32 scales, one per 32 values.
///
/// Writing streams through zstd in pieces, so saving never holds a second copy of the cache;
/// it goes to a temporary file in the same folder, is fsynced, then renamed over the old
/// one, so a crash, kill -9 or full disk at any moment leaves the previous save intact.
/// Reading builds a fresh cache and only hands it over once the end marker and the zstd
/// checksum have been read: a bad file never touches the conversation in use.
public enum SessionFile {
    public static let magic: [UInt8] = Array("SCROLLSN".utf8)
    public static let version: UInt32 = 3
    static let maxHeaderBytes = 1 << 20

    /// How KV rows are stored (`--session-kv`).
    public enum KVEncoding: String, Codable, CaseIterable { case int8, lossless }

    // MARK: Save

    /// Saves the generator's whole state and the chat to `path`, atomically.
    public static func save(to path: String, generator: Generator, conversation: SessionConversation,
                            encoding requested: KVEncoding = .int8, modelName: String, flags: [String] = []) throws {
        let cache = generator.cache
        let encoding: KVEncoding = cache.precision == .int8 ? .int8 : requested
        let header = SessionHeader(fingerprint: SessionFingerprint(model: generator.model, tokenizer: generator.tokenizer, cache: cache),
                                   model: modelName, savedAt: Date().timeIntervalSince1970, tokens: cache.tokensSeen,
                                   memoryTokens: cache.memory?.tokens ?? 0, messages: conversation.messages.count,
                                   kvEncoding: encoding, title: conversation.title, flags: flags)
        let directory = (path as NSString).deletingLastPathComponent
        let temporary = (directory.isEmpty ? "." : directory) + "/.\((path as NSString).lastPathComponent).saving-\(getpid())"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw failure(path, "cannot create \(temporary): \(String(cString: strerror(errno)))") }
        var done = false
        defer {
            if !done { close(fd); unlink(temporary) }
        }
        do {
            let headerBytes = Array(try JSONEncoder().encode(header))
            var prefix = magic
            prefix += bytes(of: version) + bytes(of: UInt32(headerBytes.count)) + headerBytes + bytes(of: crc32(headerBytes))
            try prefix.withUnsafeBytes { try Zstd.writeAll(fd, $0) }
            let body = try BodyWriter(fd: fd)
            try writeBody(body, generator: generator, conversation: conversation, encoding: encoding)
            try body.finish()
            guard fsync(fd) == 0 else { throw Zstd.Failure(description: "fsync failed: \(String(cString: strerror(errno)))") }
        } catch let e as Zstd.Failure {
            throw failure(path, e.description)
        } catch is EncodingError {
            throw failure(path, "a record holds a value JSON cannot store (NaN or infinity)")
        }
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
    }

    private static func writeBody(_ w: BodyWriter, generator: Generator, conversation: SessionConversation,
                                  encoding: KVEncoding) throws {
        let cache = generator.cache
        let json = Array(try JSONEncoder().encode(conversation))
        try w.put(UInt32(json.count)); try w.put(bytes: json)
        try w.put(UInt64(generator.history.count))
        try w.put(array: generator.history.map { Int32($0) })
        let logits = generator.lastLogits.map(Array.init) ?? []
        try w.put(UInt32(logits.count)); try w.put(array: logits)

        let hd = cache.headDim, count = cache.count, groups = hd / Int(CK_KV_GROUP)
        let codec = RowCodec(rows: max(cache.capacity, cache.memory?.settings.blockSize ?? 0), headDim: hd)
        /// `rows` f32 rows at `f`, or int8 codes and scales already stored.
        func putRows(f32 f: UnsafePointer<Float>?, int8 stored: (UnsafePointer<Int8>, UnsafePointer<Float>)?, rows: Int) throws {
            if let (c, s) = stored {
                try w.put(raw: UnsafeRawBufferPointer(start: c, count: rows * hd))
                try w.put(raw: UnsafeRawBufferPointer(start: s, count: rows * groups * 4))
            } else if encoding == .lossless {
                try w.put(raw: UnsafeRawBufferPointer(start: f!, count: rows * hd * 4))
            } else {
                try codec.encode(f!, rows: rows, to: w)
            }
        }
        for l in 0..<cache.layerCount {
            for storage in [(cache.keys[l], cache.keyScales[l]), (cache.values[l], cache.valueScales[l])] {
                for h in 0..<cache.kvHeadCount {
                    let row = h * cache.capacity
                    if cache.precision == .int8 {
                        try putRows(f32: nil, int8: (UnsafePointer(storage.0.assumingMemoryBound(to: Int8.self) + row * hd), UnsafePointer(storage.1 + row * groups)), rows: count)
                    } else {
                        try putRows(f32: storage.0.assumingMemoryBound(to: Float.self) + row * hd, int8: nil, rows: count)
                    }
                }
            }
        }
        if let memory = cache.memory {
            let b = memory.settings.blockSize
            for l in 0..<cache.layerCount {
                let pending = memory.pendingCount[l]
                for h in 0..<cache.kvHeadCount {
                    try putRows(f32: memory.pendingKeys[l] + h * b * hd, int8: nil, rows: pending)
                    try putRows(f32: memory.pendingValues[l] + h * b * hd, int8: nil, rows: pending)
                }
                try w.put(array: memory.representatives[l])
                let scorer = memory.scorer
                for h in 0..<cache.kvHeadCount {
                    try w.put(raw: UnsafeRawBufferPointer(start: scorer.scores[l] + h * b, count: pending * 4))
                }
                try w.put(raw: UnsafeRawBufferPointer(start: scorer.ring[l], count: scorer.ringSize * cache.kvHeadCount * hd * 4))
            }
            for block in 0..<memory.blocks {
                for l in 0..<cache.layerCount {
                    guard let blob = memory.store.read(block * cache.layerCount + l, into: memory.blob) else {
                        throw Zstd.Failure(description: "memory block \(block) is unreadable (\(memory.failure ?? "lost"))")
                    }
                    if encoding == .lossless {
                        try w.put(raw: UnsafeRawBufferPointer(start: blob, count: memory.store.blobBytes))
                    } else {
                        try codec.encodeBlob(blob, memory: memory, to: w)
                    }
                }
            }
            let ranking = Array(try JSONEncoder().encode(RankingState(memory)))
            try w.put(UInt32(ranking.count)); try w.put(bytes: ranking)
        }
        try w.put(bytes: Array("END!".utf8))
    }

    // MARK: Load

    /// What a session file holds, read into a fresh cache that has not been used yet.
    public struct Contents {
        public let header: SessionHeader
        public let conversation: SessionConversation
        public let cache: KVCache
        public let history: [Int]
        public let logits: [Float]
    }

    /// Reads only the header (for listings, and to check the fingerprint early).
    public static func header(at path: String) throws -> SessionHeader {
        let fd = try openForReading(path)
        defer { close(fd) }
        return try readHeader(fd, path)
    }

    /// Reads the header and the conversation record only (for `scroll sessions show`).
    public static func conversation(at path: String) throws -> (SessionHeader, SessionConversation) {
        let fd = try openForReading(path)
        defer { close(fd) }
        let header = try readHeader(fd, path)
        do {
            let r = try BodyReader(fd: fd)
            let json = try r.bytes(count: Int(try r.get(UInt32.self)), limit: 1 << 30)
            return (header, try JSONDecoder().decode(SessionConversation.self, from: Data(json)))
        } catch is Zstd.Failure {
            throw failure(path, "damaged: conversation record unreadable", loading: true)
        } catch is DecodingError {
            throw failure(path, "damaged: conversation record unreadable", loading: true)
        }
    }

    /// Reads the session at `path` into `freshCache` (made like the cache in use). Throws a
    /// one-line error naming the problem if the file is not a session, is damaged, or was
    /// made with another model or other cache settings; `freshCache` is then discarded.
    public static func load(from path: String, model: Transformer, tokenizer: Tokenizer, freshCache cache: KVCache) throws -> Contents {
        let fd = try openForReading(path)
        defer { close(fd) }
        let (header, version) = try readVersionedHeader(fd, path)
        let expected = SessionFingerprint(model: model, tokenizer: tokenizer, cache: cache)
        if let difference = header.fingerprint.difference(from: expected) {
            throw failure(path, difference, loading: true)
        }
        if cache.precision == .int8 && header.kvEncoding != .int8 { throw failure(path, "KV encoding does not match the int8 cache", loading: true) }
        do {
            let r = try BodyReader(fd: fd)
            let conversation = try JSONDecoder().decode(SessionConversation.self, from: Data(try r.bytes(count: Int(try r.get(UInt32.self)), limit: 1 << 30)))
            if let problem = conversation.sampler.problem { throw Zstd.Failure(description: "sampler: \(problem)") }
            let n = Int(try r.get(UInt64.self))
            guard n == header.tokens else { throw Zstd.Failure(description: "history holds \(n) tokens, header says \(header.tokens)") }
            let history = try r.array(Int32.self, count: n).map { Int($0) }
            guard history.allSatisfy({ $0 >= 0 && $0 < model.config.vocabSize }) else { throw Zstd.Failure(description: "token id out of range") }
            let logitCount = Int(try r.get(UInt32.self))
            guard logitCount == (n == 0 ? 0 : model.config.vocabSize) else { throw Zstd.Failure(description: "logits have the wrong size") }
            let logits = try r.array(Float.self, count: logitCount)
            try logits.withUnsafeBufferPointer { try requireFinite($0, "logits") }
            try readCache(r, into: cache, tokens: n, encoding: header.kvEncoding, version: version)
            guard try r.bytes(count: 4, limit: 4) == Array("END!".utf8) else { throw Zstd.Failure(description: "end marker missing") }
            try r.finish()
            return Contents(header: header, conversation: conversation, cache: cache, history: history, logits: logits)
        } catch let e as Zstd.Failure {
            throw failure(path, "damaged: \(e.description)", loading: true)
        } catch is DecodingError {
            throw failure(path, "damaged: conversation record unreadable", loading: true)
        }
    }

    private static func readCache(_ r: BodyReader, into cache: KVCache, tokens n: Int, encoding: KVEncoding, version: UInt32) throws {
        guard cache.policy.window != nil || n <= cache.capacity else { throw Zstd.Failure(description: "more tokens than the dense cache holds") }
        let hd = cache.headDim, groups = hd / Int(CK_KV_GROUP)
        cache.restore(tokensSeen: n)
        let count = cache.count
        let codec = RowCodec(rows: max(cache.capacity, cache.memory?.settings.blockSize ?? 0), headDim: hd)
        /// Reads `rows` rows into f32 rows at `f`, or into stored int8 codes and scales.
        func getRows(f32 f: UnsafeMutablePointer<Float>?, int8 stored: (UnsafeMutablePointer<Int8>, UnsafeMutablePointer<Float>)?, rows: Int) throws {
            if let (c, s) = stored {
                try r.read(into: UnsafeMutableRawBufferPointer(start: c, count: rows * hd))
                try r.read(into: UnsafeMutableRawBufferPointer(start: s, count: rows * groups * 4))
                guard UnsafeBufferPointer(start: s, count: rows * groups).allSatisfy({ $0.isFinite }) else {
                    throw Zstd.Failure(description: "non-finite KV scale")
                }
            } else if encoding == .lossless {
                try r.read(into: UnsafeMutableRawBufferPointer(start: f!, count: rows * hd * 4))
                try requireFinite(UnsafeBufferPointer(start: f!, count: rows * hd), "KV row")
            } else {
                try codec.decode(from: r, rows: rows, into: f!)
                try requireFinite(UnsafeBufferPointer(start: f!, count: rows * hd), "KV row")
            }
        }
        for l in 0..<cache.layerCount {
            for storage in [(cache.keys[l], cache.keyScales[l]), (cache.values[l], cache.valueScales[l])] {
                for h in 0..<cache.kvHeadCount {
                    let row = h * cache.capacity
                    if cache.precision == .int8 {
                        try getRows(f32: nil, int8: (storage.0.assumingMemoryBound(to: Int8.self) + row * hd, storage.1 + row * groups), rows: count)
                    } else {
                        try getRows(f32: storage.0.assumingMemoryBound(to: Float.self) + row * hd, int8: nil, rows: count)
                    }
                }
            }
        }
        guard let memory = cache.memory else { return }
        let b = memory.settings.blockSize, kvh = cache.kvHeadCount
        let held = max(0, n - cache.capacity)
        let blocks = held / b, pending = held % b
        for l in 0..<cache.layerCount {
            for i in 0..<pending { memory.pendingPositions[l][i] = Int64(cache.policy.sinks + blocks * b + i) }
            for h in 0..<kvh {
                try getRows(f32: memory.pendingKeys[l] + h * b * hd, int8: nil, rows: pending)
                try getRows(f32: memory.pendingValues[l] + h * b * hd, int8: nil, rows: pending)
            }
            memory.pendingCount[l] = pending
            if version == 1 { memory.turnPending(layer: l, keys: memory.pendingKeys[l], toCanonical: false) }
            memory.representatives[l] = try r.array(Float.self, count: blocks * kvh * hd)
            try memory.representatives[l].withUnsafeBufferPointer { try requireFinite($0, "representative key") }
            memory.blockCount[l] = blocks
            // Before version 3 there were none: the block being filled is scored from here on.
            let scorer = memory.scorer
            if version >= 3 {
                for h in 0..<kvh {
                    try r.read(into: UnsafeMutableRawBufferPointer(start: scorer.scores[l] + h * b, count: pending * 4))
                    try requireFinite(UnsafeBufferPointer(start: scorer.scores[l] + h * b, count: pending), "block score")
                }
                try r.read(into: UnsafeMutableRawBufferPointer(start: scorer.ring[l], count: scorer.ringSize * kvh * hd * 4))
                try requireFinite(UnsafeBufferPointer(start: scorer.ring[l], count: scorer.ringSize * kvh * hd), "query sum")
            }
        }
        memory.scorer.restore(tokensSeen: n)
        memory.blockStarts = (0..<blocks).map { cache.policy.sinks + $0 * b }
        for block in 0..<blocks {
            for l in 0..<cache.layerCount {
                if encoding == .lossless {
                    try r.read(into: UnsafeMutableRawBufferPointer(start: memory.blob, count: memory.store.blobBytes))
                    try requireFinite(memory.blobScales, "memory scale")
                } else {
                    try codec.decodeBlob(from: r, memory: memory)
                }
                memory.store.write(block * cache.layerCount + l, from: memory.blob)
            }
        }
        if let why = memory.failure { throw Zstd.Failure(description: "cannot hold the memory: \(why)") }
        let json = try r.bytes(count: Int(try r.get(UInt32.self)), limit: 1 << 30)
        guard let ranking = try? JSONDecoder().decode(RankingState.self, from: Data(json)) else {
            throw Zstd.Failure(description: "memory ranking record unreadable")
        }
        try ranking.apply(to: memory)
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

    private static func readHeader(_ fd: Int32, _ path: String) throws -> SessionHeader { try readVersionedHeader(fd, path).0 }

    private static func readVersionedHeader(_ fd: Int32, _ path: String) throws -> (SessionHeader, UInt32) {
        func read(_ n: Int) throws -> [UInt8] {
            var out = [UInt8](repeating: 0, count: n), done = 0
            while done < n {
                let r = out.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress! + done, n - done) }
                guard r > 0 else { throw failure(path, done == 0 && n == 8 ? "empty file, not a session" : "truncated header", loading: true) }
                done += r
            }
            return out
        }
        guard try read(8) == magic else { throw failure(path, "not a Scroll session file (bad magic)", loading: true) }
        let fixed = try read(8)
        let version = UInt32(littleEndian: fixed.withUnsafeBytes { $0.loadUnaligned(as: UInt32.self) })
        guard (1...Self.version).contains(version) else {
            throw failure(path, "session format version \(version), this Scroll reads versions 1 to \(Self.version)", loading: true)
        }
        let length = Int(UInt32(littleEndian: fixed.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self) }))
        guard length <= maxHeaderBytes else { throw failure(path, "header length \(length) is implausible (damaged)", loading: true) }
        let json = try read(length)
        let crc = try read(4).withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(as: UInt32.self)) }
        guard crc == crc32(json) else { throw failure(path, "header checksum mismatch (damaged)", loading: true) }
        guard let header = try? JSONDecoder().decode(SessionHeader.self, from: Data(json)) else {
            throw failure(path, "header unreadable (damaged)", loading: true)
        }
        return (header, version)
    }

    static func failure(_ path: String, _ why: String, loading: Bool = false) -> EngineError {
        .invalidArgument("cannot \(loading ? "load" : "save") session \(path): \(why)")
    }

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
