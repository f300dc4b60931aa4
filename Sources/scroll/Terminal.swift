import Foundation

/// Output helpers: replies stream to stdout, everything else goes to stderr.
enum Terminal {
    static var stdinIsTTY: Bool { isatty(STDIN_FILENO) == 1 }
    static var stdoutIsTTY: Bool { isatty(STDOUT_FILENO) == 1 }
    static var stderrIsTTY: Bool { isatty(STDERR_FILENO) == 1 }

    static func write(_ s: String) {
        fputs(s, stdout)
        fflush(stdout)
    }

    static func note(_ s: String) {
        fputs(s + "\n", stderr)
    }
}

/// Set by SIGINT while a reply is streaming; the generation loop polls it. A dispatch
/// source turns the signal into an ordinary callback, so no Swift code runs in a handler.
final class InterruptFlag {
    private let lock = NSLock()
    private var raised = false
    private var source: DispatchSourceSignal?

    func install() {
        signal(SIGINT, SIG_IGN)
        let s = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        s.setEventHandler { [weak self] in self?.raise() }
        s.resume()
        source = s
    }

    func raise() { lock.lock(); raised = true; lock.unlock() }
    func clear() { lock.lock(); raised = false; lock.unlock() }
    var isRaised: Bool { lock.lock(); defer { lock.unlock() }; return raised }
}
