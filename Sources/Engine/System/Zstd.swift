import CZstd
import Foundation

/// The one file that calls libzstd. Errors become Swift throws here.
public enum Zstd {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// One zstd frame with a content checksum.
    public static func compress(_ data: [UInt8], level: Int32 = 3) throws -> [UInt8] {
        guard let ctx = ZSTD_createCCtx() else { throw Failure(description: "zstd: out of memory") }
        defer { ZSTD_freeCCtx(ctx) }
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, level))
        try check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_checksumFlag, 1))
        var out = [UInt8](repeating: 0, count: ZSTD_compressBound(data.count))
        let n = try out.withUnsafeMutableBytes { o in
            try data.withUnsafeBytes { i in try check(ZSTD_compress2(ctx, o.baseAddress, o.count, i.baseAddress, i.count)) }
        }
        out.removeSubrange(n...)
        return out
    }

    /// Decompresses a whole frame, refusing outputs larger than `limit` bytes.
    public static func decompress(_ data: [UInt8], limit: Int) throws -> [UInt8] {
        guard let ctx = ZSTD_createDCtx() else { throw Failure(description: "zstd: out of memory") }
        defer { ZSTD_freeDCtx(ctx) }
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: ZSTD_DStreamOutSize())
        try data.withUnsafeBytes { src in
            var input = ZSTD_inBuffer(src: src.baseAddress, size: src.count, pos: 0)
            var last = 0
            repeat {
                let produced: Int = try chunk.withUnsafeMutableBytes { dst in
                    var output = ZSTD_outBuffer(dst: dst.baseAddress, size: dst.count, pos: 0)
                    last = try check(ZSTD_decompressStream(ctx, &output, &input))
                    return output.pos
                }
                out.append(contentsOf: chunk[..<produced])
                guard out.count <= limit else { throw Failure(description: "zstd: data larger than \(limit) bytes") }
                if produced == 0 && input.pos == input.size && last != 0 {
                    throw Failure(description: "zstd: truncated frame")
                }
            } while input.pos < input.size || last != 0
        }
        return out
    }

    @discardableResult
    private static func check(_ code: Int) throws -> Int {
        if ZSTD_isError(code) != 0 { throw Failure(description: "zstd: " + String(cString: ZSTD_getErrorName(code))) }
        return code
    }
}
