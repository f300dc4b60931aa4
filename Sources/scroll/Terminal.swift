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

    /// A line on stderr. A progress bar being drawn there is cleared first, so the note gets a
    /// line of its own (a Ctrl-C while a piped document was read printed its message on the
    /// bar's line); the bar is drawn again below it on its next update.
    static func note(_ s: String) {
        if progressShown { fputs("\r\u{1B}[K", stderr); progressShown = false }
        fputs(s + "\n", stderr)
    }
    nonisolated(unsafe) static var progressShown = false

    /// `s` safe to print (String.escapingControls): text taken from a file cannot drive the
    /// terminal. Newlines and tabs stay when `lines` is true.
    static func escaped(_ s: String, lines: Bool = false) -> String { s.escapingControls(keepingLines: lines) }

    /// Colours on stderr: only on a terminal, and never when NO_COLOR is set (no-color.org).
    static var colors: Bool {
        stderrIsTTY && (ProcessInfo.processInfo.environment["NO_COLOR"] ?? "").isEmpty
    }

    /// `s` dimmed, when colours are on.
    static func dim(_ s: String) -> String { colors ? "\u{1B}[2m" + s + "\u{1B}[0m" : s }
}

/// Streamed text wrapped at word boundaries for a terminal `width` columns wide (0: as it
/// comes). Replies wrapped where the terminal cut them, inside words ("grandeur o" /
/// "f this magnificent"). A word is held until it ends, then goes on the line if it fits and
/// on a new line if not; a word longer than a line is cut. Lines inside ``` code blocks are
/// left as they are.
struct WordWrap {
    let width: Int
    private var column = 0, word = "", line = "", inCode = false

    init(width: Int) { self.width = width }

    /// The terminal's width when stdout is one, else 0.
    static var stdoutWidth: Int {
        var size = winsize()
        return Terminal.stdoutIsTTY && ioctl(STDOUT_FILENO, UInt(TIOCGWINSZ), &size) == 0 ? Int(size.ws_col) : 0
    }

    mutating func push(_ text: String) -> String {
        guard width > 0 else { return text }
        var out = ""
        for c in text {
            if c == "\n" {
                out += endWord() + "\n"
                if line.hasPrefix("```") { inCode.toggle() }
                column = 0
                line = ""
                continue
            }
            line.append(c)
            if inCode || line.hasPrefix("```") { out.append(c); column += 1; continue }
            if c == " " {
                out += endWord()
                if column < width { out.append(c); column += 1 }
            } else {
                word.append(c)
                if word.count >= width { out += endWord() }
            }
        }
        return out
    }

    /// What is held back, at the end of a reply.
    mutating func flush() -> String { endWord() }

    private mutating func endWord() -> String {
        guard !word.isEmpty else { return "" }
        defer { word = "" }
        if column > 0 && column + word.count > width {
            column = word.count
            return "\n" + word
        }
        column += word.count
        return word
    }
}

/// Set by SIGINT while a reply is streaming; the generation loop polls it. A dispatch
/// source turns the signal into an ordinary callback, so no Swift code runs in a handler.
///
/// SIGHUP (the terminal closed) and SIGTERM raise it too, for good: once the conversation
/// exists (`catchTermination`) they stop the reply or reading in progress like a Ctrl-C, the
/// attached session is saved with what was said, and `exitIfTerminating` then ends the
/// process by the same signal (status 129 or 143 to a shell). Before that there is nothing
/// to save and they act as they always do. They used to kill Scroll mid-reply: the reply was
/// lost, a new session's first exchange with it, and a half-written save could stay behind.
final class InterruptFlag {
    private let lock = NSLock()
    private var raised = false
    private var terminating: Int32?
    private var sources: [DispatchSourceSignal] = []

    func install() { listen(SIGINT) { $0.raised = true } }

    func catchTermination() {
        for sig in [SIGHUP, SIGTERM] { listen(sig) { if $0.terminating == nil { $0.terminating = sig } } }
    }

    private func listen(_ sig: Int32, _ effect: @escaping (InterruptFlag) -> Void) {
        signal(sig, SIG_IGN)
        let s = DispatchSource.makeSignalSource(signal: sig, queue: .global())
        s.setEventHandler { [weak self] in
            guard let self else { return }
            self.lock.lock(); effect(self); self.lock.unlock()
        }
        s.resume()
        sources.append(s)
    }

    /// Forgets a Ctrl-C; a SIGHUP or SIGTERM stays.
    func clear() { lock.lock(); raised = false; lock.unlock() }
    var isRaised: Bool { lock.lock(); defer { lock.unlock() }; return raised || terminating != nil }
    /// The SIGHUP or SIGTERM received, if any.
    var terminatingSignal: Int32? { lock.lock(); defer { lock.unlock() }; return terminating }

    /// Ends the process by the signal that asked for it, if one did (call once the work is saved).
    func exitIfTerminating() {
        guard let sig = terminatingSignal else { return }
        fflush(stdout)
        sources.forEach { $0.cancel() }
        signal(sig, SIG_DFL)
        kill(getpid(), sig)
        // Blocked on this thread by the runtime: leave with the status a shell would show.
        exit(128 + sig)
    }
}

/// A one-line progress bar on stderr (tokens, tokens/s, ETA), only when stderr is a terminal.
final class ProgressLine {
    var total: Int
    let start = Date()
    let enabled = Terminal.stderrIsTTY
    /// Inputs of at most this many tokens read too fast to need a bar.
    let minimum: Int
    private var drawn = false

    init(total: Int, minimum: Int = 0) {
        self.total = total
        self.minimum = minimum
    }

    /// A feed's progress callback: drawn while `done < total` for totals above `minimum`,
    /// cleared once the input is read.
    func update(_ done: Int, of total: Int) {
        guard total > minimum else { return }
        self.total = total
        if done >= total { finish() } else { update(done) }
    }

    func update(_ done: Int) {
        guard enabled else { return }
        let elapsed = Date().timeIntervalSince(start)
        let rate = Double(done) / max(elapsed, 1e-9)
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let width = 24, filled = total > 0 ? min(width, done * width / total) : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        fputs(String(format: "\r[%@] %d/%d tokens  %.0f t/s  ETA %.0fs ", bar, done, total, rate, eta), stderr)
        drawn = true
        Terminal.progressShown = true
    }

    /// Clears the line (once; later calls do nothing until the next update).
    func finish() {
        if drawn && Terminal.progressShown { fputs("\r\u{1B}[K", stderr) }
        drawn = false
        Terminal.progressShown = false
    }
}
