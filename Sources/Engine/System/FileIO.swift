import Foundation

/// The POSIX read and write loops, with one policy for all of them: a call interrupted by a
/// signal (EINTR: SIGINT, SIGHUP and SIGTERM are caught while Scroll runs) is made again, a
/// short transfer goes on from where it stopped, and any other failure is an error carrying
/// strerror's text.
public enum FileIO {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    private static func failure(_ what: String) -> Failure { Failure(description: "\(what) failed: \(String(cString: strerror(errno)))") }

    /// One read(2) into `buffer` at file offset `offset` (nil: the descriptor's own); 0 at the end.
    public static func read(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int? = nil) throws -> Int {
        while true {
            let n = offset.map { pread(fd, buffer.baseAddress, buffer.count, off_t($0)) } ?? Foundation.read(fd, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno != EINTR { throw failure("read") }
        }
    }

    /// Fills `buffer` from `offset` (nil: the descriptor's own); false if the file ends first.
    public static func readFully(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer, at offset: Int? = nil) throws -> Bool {
        var done = 0
        while done < buffer.count {
            let n = try read(fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]), at: offset.map { $0 + done })
            if n == 0 { return false }
            done += n
        }
        return true
    }

    /// `n` bytes from the descriptor's offset, or nil if the file ends first.
    public static func readBytes(_ fd: Int32, _ n: Int) throws -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: n)
        return try out.withUnsafeMutableBytes { try readFully(fd, into: $0) } ? out : nil
    }

    /// Writes all of `bytes` at `offset` (nil: the descriptor's own); a full disk is an error.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: Int? = nil) throws {
        var done = 0
        while done < bytes.count {
            let rest = bytes.count - done, from = bytes.baseAddress! + done
            let n = offset.map { pwrite(fd, from, rest, off_t($0 + done)) } ?? Foundation.write(fd, from, rest)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { throw failure("write") }
            done += n
        }
    }
}
