/// Bounds-checked little-endian reads from a memory-mapped file. Every read that would run
/// past the end throws `truncated`, so a cut-off download is an error, never a crash.
struct ByteReader {
    let base: UnsafeRawPointer
    let count: Int
    let path: String
    var offset = 0

    mutating func need(_ n: Int, _ what: @autoclosure () -> String) throws {
        guard n >= 0, offset <= count, count - offset >= n else { throw EngineError.truncated(path, what()) }
    }

    mutating func read<T: FixedWidthInteger>(_: T.Type, _ what: @autoclosure () -> String) throws -> T {
        try need(MemoryLayout<T>.size, what())
        let v = base.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return T(littleEndian: v)
    }

    mutating func readString(_ what: @autoclosure () -> String) throws -> String {
        let n = try read(UInt64.self, what())
        guard n < UInt64(Int.max) else { throw EngineError.malformed(path, "string length in \(what())") }
        try need(Int(n), what())
        let bytes = UnsafeRawBufferPointer(start: base + offset, count: Int(n))
        offset += Int(n)
        // Vocabulary entries can hold invalid UTF-8 (byte tokens of some SentencePiece
        // vocabularies); decode leniently rather than refuse the file.
        return String(decoding: bytes, as: UTF8.self)
    }
}
