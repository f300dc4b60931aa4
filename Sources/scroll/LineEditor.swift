import CReadline
import Foundation

/// The one file that calls libreadline: line editing, the history file, tab completion, and
/// Ctrl-C at the prompt (it clears the line instead of ending the program).
///
/// Lines are read through readline's callback interface, with stdin polled, so that a
/// Ctrl-C — which InterruptFlag turns into a flag, since SIGINT is ignored while Scroll runs —
/// can be noticed between keystrokes and the line cleared from ordinary code, not from a
/// signal handler.
enum LineEditor {
    /// Completion candidates for the word being typed: (line so far, word start, word) →
    /// candidates, or nil to fall back to file names.
    nonisolated(unsafe) static var completer: ((String, Int, String) -> [String]?)?
    nonisolated(unsafe) private static var historyPath: String?
    nonisolated(unsafe) private static var received: String??
    nonisolated(unsafe) private static var candidates: [String] = []

    /// The terminal's settings when Scroll started, restored on the way out.
    nonisolated(unsafe) private static var original: termios?

    /// Loads the history file (created on first save) and installs completion.
    static func start(historyPath path: String?) {
        rl_readline_name = UnsafePointer(strdup("scroll"))
        rl_catch_signals = 0
        // A message typed over several lines is one history entry. Readline writes each
        // entry after a "#<time>" line and, with multi-line entries on, reads back every line
        // up to the next such mark as one entry; without the marks the lines of a message
        // came back as separate entries after a restart.
        history_comment_char = CChar(UInt8(ascii: "#"))
        history_write_timestamps = 1
        history_multiline_entries = 1
        if let path, let problem = historyProblem(path) {
            Terminal.note("scroll: history: \(Terminal.escaped(path)) \(problem); this session's lines are not saved")
            historyPath = nil
        } else {
            historyPath = path
        }
        if let historyPath { read_history(historyPath) }
        stifle_history(1000)
        rl_attempted_completion_function = { text, start, _ in
            let line = rl_line_buffer.map { String(cString: $0) } ?? ""
            let word = text.map { String(cString: $0) } ?? ""
            guard let found = LineEditor.completer?(line, Int(start), word) else {
                return nil   // readline completes file names
            }
            rl_attempted_completion_over = 1
            LineEditor.candidates = found
            return rl_completion_matches(text) { _, state in
                if state == 0 { LineEditor.nextCandidate = 0 }
                guard LineEditor.nextCandidate < LineEditor.candidates.count else { return nil }
                defer { LineEditor.nextCandidate += 1 }
                return strdup(LineEditor.candidates[LineEditor.nextCandidate])
            }
        }
    }
    nonisolated(unsafe) private static var nextCandidate = 0

    /// The history file is read and rewritten (cut to 1,000 entries) only when it is absent or
    /// Scroll's own: a regular file of at most 4 MB starting with readline's "#<time>" mark.
    /// Why: a FIFO named by $SCROLL_HISTORY hung in open() beyond Ctrl-C's reach, a 100 MB file
    /// took 161 s before the first prompt, and any other file it named was cut and chmod 600.
    static func historyProblem(_ path: String) -> String? {
        var st = stat()
        guard stat(path, &st) == 0 else { return errno == ENOENT ? nil : "cannot be read (\(String(cString: strerror(errno))))" }
        guard st.st_mode & S_IFMT == S_IFREG else { return "is not a regular file" }
        guard st.st_size <= 4 << 20 else { return "is \(st.st_size / (1 << 20)) MB, more than a history holds" }
        guard st.st_size > 0 else { return nil }
        let fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return "cannot be read (\(String(cString: strerror(errno))))" }
        defer { close(fd) }
        var head = [UInt8](repeating: 0, count: 16)
        let n = read(fd, &head, head.count)
        let mark = head.prefix(max(0, n)).dropFirst()
        guard head.first == UInt8(ascii: "#"), let digit = mark.first, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digit) else {
            return "is not a Scroll history file"
        }
        return nil
    }

    /// Reads one line with `prompt`; nil at end of input (Ctrl-D on an empty line) or on a
    /// SIGHUP or SIGTERM. A Ctrl-C while typing clears the line and shows a fresh prompt.
    static func readLine(prompt: String, interrupt: InterruptFlag) -> String? {
        received = nil
        interrupt.clear()
        // Readline echoes what is typed only if the terminal echoed when it took it over, so
        // echo goes back on; line mode stays off (see holdTypeahead).
        echoOn()
        rl_callback_handler_install(prompt) { cLine in
            if let cLine {
                LineEditor.received = .some(String(cString: cLine))
                free(cLine)
            } else {
                LineEditor.received = .some(nil)
            }
            rl_callback_handler_remove()
        }
        while received == nil {
            var fds = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
            let ready = poll(&fds, 1, 50)
            if interrupt.terminatingSignal != nil { rl_callback_handler_remove(); return nil }
            if interrupt.isRaised {
                interrupt.clear()
                rl_replace_line("", 0)
                fputs("^C\n", stdout)
                rl_on_new_line()
                rl_redisplay()
                continue
            }
            if ready > 0 { rl_callback_read_char() }
            if ready < 0 && errno != EINTR { rl_callback_handler_remove(); return nil }
        }
        holdTypeahead()
        guard let line = received ?? nil else { return nil }
        return line
    }

    /// From the first line on, the terminal never goes back to line mode until Scroll
    /// leaves: between prompts (while a reply streams or a session saves) it is out of line
    /// mode with echo off and signals on, so keys typed ahead wait as bytes for the next
    /// prompt, where readline reads them. In line mode a Ctrl-D is an end-of-file that the
    /// terminal driver consumes (it leaves a NUL byte behind), so a Ctrl-D typed during a
    /// reply never reached the next prompt; the line mode that readline's teardown restores
    /// and that the next prompt used to restore before readline's setup left two such
    /// windows, and a CI run once lost its Ctrl-D in one. Echo off keeps typed-ahead text
    /// from landing in the middle of a reply (readline shows it at the prompt).
    private static func holdTypeahead() {
        guard isatty(STDIN_FILENO) == 1 else { return }
        var t = termios()
        guard tcgetattr(STDIN_FILENO, &t) == 0 else { return }
        if original == nil {
            original = t
            atexit { LineEditor.finish() }
        }
        t.c_lflag &= ~tcflag_t(ICANON | ECHO)
        withUnsafeMutableBytes(of: &t.c_cc) { cc in
            cc[Int(VMIN)] = 1
            cc[Int(VTIME)] = 0
        }
        tcsetattr(STDIN_FILENO, TCSANOW, &t)
    }

    /// Turns the terminal's echo back on and leaves the rest as it is (once Scroll holds the
    /// terminal; before the first line it is as Scroll found it).
    private static func echoOn() {
        guard original != nil else { return }
        var t = termios()
        guard tcgetattr(STDIN_FILENO, &t) == 0 else { return }
        t.c_lflag |= tcflag_t(ECHO)
        tcsetattr(STDIN_FILENO, TCSANOW, &t)
    }

    /// Gives the terminal back as it was found.
    static func finish() {
        guard var t = original else { return }
        tcsetattr(STDIN_FILENO, TCSANOW, &t)
        original = nil
    }

    /// Adds an entry (a whole multi-line message is one entry) and appends it to the file.
    static func remember(_ entry: String) {
        guard !entry.trimmingCharacters(in: .whitespaces).isEmpty else { return }
        add_history(entry)
        guard let path = historyPath else { return }
        if !FileManager.default.fileExists(atPath: path) {
            _ = FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
        }
        append_history(1, path)
        history_truncate_file(path, 1000)
    }
}
