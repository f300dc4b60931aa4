import Engine
import Foundation

/// A session attached to this process: `.NAME.lock` in the sessions folder, held with
/// flock(2) for as long as this process may write NAME.
///
/// Why: two processes piping documents into `--session same` both reported success while
/// only one document survived (9 rounds of 10), and concurrent follow-ups lost an exchange
/// per round. The second process is now refused, before it reads anything, with one line
/// naming the holder. The kernel drops the lock when its process ends however it ends
/// (kill -9 included), so a lock is never stale; the PID written into the file only names
/// the holder. The file stays behind when released: unlinking it would let a third process
/// lock a new file while a second still waits on the old one.
final class SessionLock {
    let name: String
    private let fd: Int32

    init(_ name: String, in store: SessionStore) throws {
        let path = try store.lockPath(name)
        // O_NONBLOCK: a FIFO planted under the lock's name must not hang the open.
        let fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw EngineError.invalidArgument("cannot lock session \(name): \(path): \(String(cString: strerror(errno)))")
        }
        var info = stat()
        guard fstat(fd, &info) == 0, info.st_mode & S_IFMT == S_IFREG else {
            close(fd)
            throw EngineError.invalidArgument("cannot lock session \(name): \(path) is not a regular file")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var bytes = [UInt8](repeating: 0, count: 32)
            let n = (try? bytes.withUnsafeMutableBytes { try FileIO.read(fd, into: $0, at: 0) }) ?? 0
            close(fd)
            let holder = Int32(String(decoding: bytes.prefix(n), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
            throw EngineError.invalidArgument("session \(name) is in use by another scroll" + (holder.map { " (process \($0))" } ?? "")
                                              + "; wait for it to finish, or use another name")
        }
        // A folder that cannot take the save is said now, not after a long document was read.
        guard access(store.directory, W_OK) == 0 else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw EngineError.invalidArgument("cannot save session \(name): \(store.directory): \(why)")
        }
        let pid = Array("\(getpid())\n".utf8)
        if ftruncate(fd, 0) == 0 { try? pid.withUnsafeBytes { try FileIO.writeAll(fd, $0, at: 0) } }
        self.name = name
        self.fd = fd
    }

    deinit { close(fd) }
}
