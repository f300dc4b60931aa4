import CKernels
import Foundation

/// The body's writer: small values gather in a buffer, large arrays go straight to zstd.
final class BodyWriter {
    private let zstd: Zstd.Writer
    /// Compressed bytes written so far.
    var bytesWritten: Int { zstd.bytesWritten }
    private var buffer: [UInt8] = []

    init(fd: Int32) throws {
        zstd = try Zstd.Writer(fd: fd)
        buffer.reserveCapacity(1 << 16)
    }

    func put<T: FixedWidthInteger>(_ value: T) throws { try put(bytes: withUnsafeBytes(of: value.littleEndian) { Array($0) }) }
    func put(bytes: [UInt8]) throws {
        buffer += bytes
        if buffer.count >= 1 << 16 { try flush() }
    }
    func put<T>(array: [T]) throws { try array.withUnsafeBytes { try put(raw: $0) } }
    func put(raw: UnsafeRawBufferPointer) throws {
        if raw.count < 4096 { try put(bytes: Array(raw)); return }
        try flush()
        try zstd.write(raw)
    }
    func finish() throws {
        try flush()
        try zstd.finish()
    }
    private func flush() throws {
        try buffer.withUnsafeBytes { try zstd.write($0) }
        buffer.removeAll(keepingCapacity: true)
    }
}

/// The body's reader. Arrays are read in pieces, so a damaged count fails at the end of the
/// data instead of asking for an absurd allocation up front; and the data may not expand
/// beyond what a real session compresses to, so a small crafted file cannot make loading
/// allocate or write gigabytes (a 35 KB file whose zstd frame was zeros claimed 268M tokens
/// and took 3.5 GB). Real bodies are KV rows that compress ~1.1–1.6×; text and token ids,
/// which compress far better, are a few MB at most, within the slack.
final class BodyReader {
    private let zstd: Zstd.Reader
    static let maxExpansion = 64, expansionSlack = 32 << 20

    /// `limit`: the frame's bytes in the file (v4 frames are followed by others).
    init(fd: Int32, limit: Int = .max) throws { zstd = try Zstd.Reader(fd: fd, limit: limit) }

    func get<T: FixedWidthInteger>(_: T.Type) throws -> T {
        var v = T.zero
        try withUnsafeMutableBytes(of: &v) { try read(into: $0) }
        return T(littleEndian: v)
    }
    /// A u64 stream length, refused beyond 2^40 before it becomes an Int (a mutated session
    /// holding 2^63 or more trapped the conversion and crashed the load).
    func length() throws -> Int {
        let v = try get(UInt64.self)
        guard v < 1 << 40 else { throw Zstd.Failure(description: "a stream length of \(v) tokens") }
        return Int(v)
    }
    func read(into buffer: UnsafeMutableRawBufferPointer) throws {
        guard buffer.count > 0 else { return }
        try zstd.read(into: buffer)
        guard zstd.decompressedBytes <= Self.expansionSlack + Self.maxExpansion * zstd.compressedBytes else {
            throw Zstd.Failure(description: "the data expands \(zstd.decompressedBytes / max(1, zstd.compressedBytes))-fold, more than any session (crafted?)")
        }
    }
    func bytes(count: Int, limit: Int) throws -> [UInt8] {
        guard count <= limit else { throw Zstd.Failure(description: "record of \(count) bytes is implausible") }
        return try array(UInt8.self, count: count)
    }
    func array<T>(_: T.Type, count: Int) throws -> [T] {
        let piece = max(1, (1 << 20) / MemoryLayout<T>.stride)
        var out: [T] = []
        while out.count < count {
            let n = min(piece, count - out.count)
            let part = try [T](unsafeUninitializedCapacity: n) { buf, initialized in
                try read(into: UnsafeMutableRawBufferPointer(buf))
                initialized = n
            }
            out += part
        }
        return out
    }
    func finish() throws { try zstd.finish() }
}

/// The "int8" session encoding of f32 rows (session_codec.c): for `rows` rows of head_dim,
/// the int8 codes then the f16 (mean, step) of each group of 64 tokens and channel.
final class RowCodec {
    /// Steps per rms deviation: the quantization error is ~rms/(steps·√12) per value.
    /// 10 is measured (docs/sessions.md): resumed perplexity within 1% and a file ~37% of f16.
    static let steps: Float = 10
    let headDim: Int
    let encoding: SessionFile.KVEncoding
    private var codes: [Int8]
    private var params: [UInt16]
    private var floats: [Float]

    init(rows: Int, headDim: Int, encoding: SessionFile.KVEncoding) {
        self.headDim = headDim
        self.encoding = encoding
        let n = max(1, rows)
        codes = Array(repeating: 0, count: n * headDim)
        params = Array(repeating: 0, count: Self.paramCount(rows: n, headDim: headDim))
        floats = Array(repeating: 0, count: n * headDim)
    }

    /// Writes a `rows` record: `rows` f32 rows at `f` as the encoding stores them, or the codes
    /// and scales of an int8 cache as they are.
    func put(f32 f: UnsafePointer<Float>?, int8 stored: (UnsafePointer<Int8>, UnsafePointer<Float>)?, rows: Int, to w: BodyWriter) throws {
        let groups = headDim / Int(CK_KV_GROUP)
        if let (c, s) = stored {
            try w.put(raw: UnsafeRawBufferPointer(start: c, count: rows * headDim))
            try w.put(raw: UnsafeRawBufferPointer(start: s, count: rows * groups * 4))
        } else if encoding == .lossless {
            try w.put(raw: UnsafeRawBufferPointer(start: f!, count: rows * headDim * 4))
        } else {
            try encode(f!, rows: rows, to: w)
        }
    }

    /// Reads a `rows` record into f32 rows at `f`, or into an int8 cache's codes and scales;
    /// a NaN or infinity is refused.
    func get(f32 f: UnsafeMutablePointer<Float>?, int8 stored: (UnsafeMutablePointer<Int8>, UnsafeMutablePointer<Float>)?, rows: Int,
             from r: BodyReader) throws {
        let groups = headDim / Int(CK_KV_GROUP)
        if let (c, s) = stored {
            try r.read(into: UnsafeMutableRawBufferPointer(start: c, count: rows * headDim))
            try r.read(into: UnsafeMutableRawBufferPointer(start: s, count: rows * groups * 4))
            try SessionFile.requireFinite(UnsafeBufferPointer(start: s, count: rows * groups), "KV scale")
        } else {
            if encoding == .lossless {
                try r.read(into: UnsafeMutableRawBufferPointer(start: f!, count: rows * headDim * 4))
            } else {
                try decode(from: r, rows: rows, into: f!)
            }
            try SessionFile.requireFinite(UnsafeBufferPointer(start: f!, count: rows * headDim), "KV row")
        }
    }

    static func paramCount(rows: Int, headDim: Int) -> Int {
        (rows + Int(CK_SESSION_GROUP) - 1) / Int(CK_SESSION_GROUP) * headDim * 2
    }

    func encode(_ x: UnsafePointer<Float>, rows: Int, to w: BodyWriter) throws {
        guard rows > 0 else { return }
        let p = Self.paramCount(rows: rows, headDim: headDim)
        codes.withUnsafeMutableBufferPointer { c in
            params.withUnsafeMutableBufferPointer { ck_session_encode(x, Int64(rows), Int32(headDim), Self.steps, c.baseAddress, $0.baseAddress) }
        }
        try codes.withUnsafeBytes { try w.put(raw: UnsafeRawBufferPointer(rebasing: $0[..<(rows * headDim)])) }
        try params.withUnsafeBytes { try w.put(raw: UnsafeRawBufferPointer(rebasing: $0[..<(p * 2)])) }
    }

    func decode(from r: BodyReader, rows: Int, into y: UnsafeMutablePointer<Float>) throws {
        guard rows > 0 else { return }
        let p = Self.paramCount(rows: rows, headDim: headDim)
        try codes.withUnsafeMutableBytes { try r.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[..<(rows * headDim)])) }
        try params.withUnsafeMutableBytes { try r.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[..<(p * 2)])) }
        codes.withUnsafeBufferPointer { c in
            params.withUnsafeBufferPointer { ck_session_decode(c.baseAddress, $0.baseAddress, Int64(rows), Int32(headDim), y) }
        }
    }

    // A memory blob (BlockMemory.blobRows) is re-coded per (keys or values, KV head):
    // dequantized, then encoded like cache rows; loading quantizes them back.
    func encodeBlob(_ blob: UnsafeRawPointer, memory: BlockMemory, to w: BodyWriter) throws {
        let b = memory.settings.blockSize, hd = headDim, groups = hd / Int(CK_KV_GROUP)
        for part in 0..<2 {
            for h in 0..<memory.kvHeadCount {
                let (c, s) = memory.blobRows(blob, part: part, head: h)
                try floats.withUnsafeMutableBufferPointer { f in
                    for row in 0..<b { ck_dequantize_kv_row(c + row * hd, s + row * groups, f.baseAddress! + row * hd, Int32(hd)) }
                    try encode(f.baseAddress!, rows: b, to: w)
                }
            }
        }
    }

    func decodeBlob(from r: BodyReader, memory: BlockMemory) throws {
        let b = memory.settings.blockSize, hd = headDim, groups = hd / Int(CK_KV_GROUP)
        for part in 0..<2 {
            for h in 0..<memory.kvHeadCount {
                let (c, s) = memory.blobRows(memory.blob, part: part, head: h)
                try floats.withUnsafeMutableBufferPointer { f in
                    try decode(from: r, rows: b, into: f.baseAddress!)
                    try SessionFile.requireFinite(UnsafeBufferPointer(start: f.baseAddress!, count: b * hd), "memory row")
                    for row in 0..<b { ck_quantize_kv_row(f.baseAddress! + row * hd, c + row * hd, s + row * groups, Int32(hd)) }
                }
            }
        }
    }
}
