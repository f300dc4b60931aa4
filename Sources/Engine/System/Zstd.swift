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

    /// Compresses a stream into one frame (content checksum on) written to a file
    /// descriptor as it goes: memory stays at one buffer however much is written.
    public final class Writer {
        private let ctx: OpaquePointer
        private let fd: Int32
        private var out: [UInt8]
        public private(set) var bytesWritten = 0

        public init(fd: Int32, level: Int32 = 3) throws {
            guard let ctx = ZSTD_createCCtx() else { throw Failure(description: "zstd: out of memory") }
            self.ctx = ctx
            self.fd = fd
            out = [UInt8](repeating: 0, count: ZSTD_CStreamOutSize())
            try Zstd.check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_compressionLevel, level))
            try Zstd.check(ZSTD_CCtx_setParameter(ctx, ZSTD_c_checksumFlag, 1))
        }

        deinit { ZSTD_freeCCtx(ctx) }

        public func write(_ bytes: UnsafeRawBufferPointer) throws {
            var input = ZSTD_inBuffer(src: bytes.baseAddress, size: bytes.count, pos: 0)
            while input.pos < input.size { _ = try step(&input, ZSTD_e_continue) }
        }

        /// Ends the frame (writes its checksum).
        public func finish() throws {
            var input = ZSTD_inBuffer(src: nil, size: 0, pos: 0)
            while try step(&input, ZSTD_e_end) != 0 {}
        }

        private func step(_ input: inout ZSTD_inBuffer, _ mode: ZSTD_EndDirective) throws -> Int {
            let (left, produced) = try out.withUnsafeMutableBytes { o -> (Int, Int) in
                var output = ZSTD_outBuffer(dst: o.baseAddress, size: o.count, pos: 0)
                let left = try Zstd.check(ZSTD_compressStream2(ctx, &output, &input, mode))
                return (left, output.pos)
            }
            try out.withUnsafeBytes { try FileIO.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[..<produced])) }
            bytesWritten += produced
            return left
        }
    }

    /// Reads one frame from a file descriptor, exactly as many bytes as asked each time. With
    /// `limit`, at most that many bytes are read from the file (a frame followed by others).
    public final class Reader {
        private let ctx: OpaquePointer
        private let fd: Int32
        private var left: Int
        private var input: [UInt8]
        private var inPos = 0, inSize = 0
        private var frameDone = false
        /// Bytes read from the file, and bytes of data they gave so far.
        public private(set) var compressedBytes = 0, decompressedBytes = 0

        public init(fd: Int32, limit: Int = .max) throws {
            guard let ctx = ZSTD_createDCtx() else { throw Failure(description: "zstd: out of memory") }
            self.ctx = ctx
            self.fd = fd
            left = limit
            input = [UInt8](repeating: 0, count: ZSTD_DStreamInSize())
        }

        deinit { ZSTD_freeDCtx(ctx) }

        /// Fills `buffer` completely, or throws: the frame ended early or is corrupt.
        public func read(into buffer: UnsafeMutableRawBufferPointer) throws {
            var output = ZSTD_outBuffer(dst: buffer.baseAddress, size: buffer.count, pos: 0)
            while output.pos < output.size {
                if frameDone { throw Failure(description: "data ends early") }
                try pump(&output)
            }
            decompressedBytes += buffer.count
        }

        /// Checks that the frame ends here, its checksum holds and nothing follows it.
        public func finish() throws {
            var spare: UInt8 = 0
            try withUnsafeMutableBytes(of: &spare) { b in
                var output = ZSTD_outBuffer(dst: b.baseAddress, size: 1, pos: 0)
                while !frameDone {
                    try pump(&output)
                    if output.pos > 0 { throw Failure(description: "data continues past its end") }
                }
            }
            if try inPos < inSize || refill() > 0 { throw Failure(description: "bytes follow the end of the data") }
        }

        private func pump(_ output: inout ZSTD_outBuffer) throws {
            if inPos == inSize, try refill() == 0 { throw Failure(description: "file ends early (truncated)") }
            let left = try input.withUnsafeBytes { i -> Int in
                var buf = ZSTD_inBuffer(src: i.baseAddress, size: inSize, pos: inPos)
                defer { inPos = buf.pos }
                return try Zstd.check(ZSTD_decompressStream(ctx, &output, &buf))
            }
            if left == 0 { frameDone = true }
        }

        private func refill() throws -> Int {
            let n = try input.withUnsafeMutableBytes { try FileIO.read(fd, into: UnsafeMutableRawBufferPointer(rebasing: $0[..<min($0.count, left)])) }
            inPos = 0
            inSize = n
            left -= n
            compressedBytes += n
            return n
        }
    }

    @discardableResult
    private static func check(_ code: Int) throws -> Int {
        if ZSTD_isError(code) != 0 { throw Failure(description: "zstd: " + String(cString: ZSTD_getErrorName(code))) }
        return code
    }
}
