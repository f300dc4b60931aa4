import Engine
import Foundation

/// The interactive loop: each message is a user turn or a /command; /quit or Ctrl-D leaves;
/// Ctrl-C stops a reply (what was generated stays) or clears the line being typed. An
/// attached session (--session, /save NAME, /load NAME) is saved after each reply and on
/// the way out, and its name is the prompt; /reset and /system leave it as last saved and go
/// on unattached. SIGHUP and SIGTERM stop a reply like Ctrl-C, then save and leave. Slash
/// commands live in one table (REPLCommands.swift) that drives dispatch, /help and tab
/// completion.
final class REPL {
    let conversation: Conversation
    var maxTokens: Int
    let store: SessionStore
    let encoding: SessionFile.KVEncoding
    /// The session replies are saved to (--session, /save NAME or /load NAME), locked
    /// while attached.
    var attached: SessionLock?
    var sessionName: String? { attached?.name }
    var lastReply: Conversation.ReplyStats?
    var done = false
    let interrupt: InterruptFlag

    init(conversation: Conversation, maxTokens: Int, store: SessionStore, encoding: SessionFile.KVEncoding, attached: SessionLock?, interrupt: InterruptFlag) {
        self.interrupt = interrupt
        self.conversation = conversation
        self.maxTokens = maxTokens
        self.store = store
        self.encoding = encoding
        self.attached = attached
    }

    /// The history file: $SCROLL_HISTORY, else ~/.scroll_history.
    static var historyPath: String {
        let env = ProcessInfo.processInfo.environment
        if let p = env["SCROLL_HISTORY"], !p.isEmpty { return p }
        return (NSHomeDirectory() as NSString).appendingPathComponent(".scroll_history")
    }

    func run() throws {
        LineEditor.start(historyPath: Self.historyPath)
        defer { LineEditor.finish() }
        LineEditor.completer = { [unowned self] line, start, word in self.complete(line: line, start: start, word: word) }
        Terminal.note("Scroll — \(conversation.generator.model.config.architecture) model loaded. Type a message (end a line with \\ or wrap it in \"\"\" for more lines); /help lists commands; Ctrl-D leaves.")
        while !done, let message = readMessage() {
            let text = message.trimmingCharacters(in: .whitespacesAndNewlines)
            if text.isEmpty { continue }
            LineEditor.remember(message)
            if text.hasPrefix("/") {
                dispatch(text)
            } else {
                send(text)
            }
        }
        if !done { Terminal.write("\n") }
        autosave()
    }

    /// One message: a line; lines ending in \ continue; a line of """ opens a block that a
    /// line ending in """ closes. Pasted text arrives whole (readline's bracketed paste).
    /// Nil at the end of input, or after a SIGHUP or SIGTERM (a half-typed message is not sent).
    private func readMessage() -> String? {
        let message = readLines()
        return interrupt.terminatingSignal == nil ? message : nil
    }

    private func readLines() -> String? {
        guard var line = LineEditor.readLine(prompt: (sessionName ?? "") + "> ", interrupt: interrupt) else { return nil }
        if line.trimmingCharacters(in: .whitespaces).hasPrefix("\"\"\"") {
            var lines = [String(line.trimmingCharacters(in: .whitespaces).dropFirst(3))]
            if lines[0].hasSuffix("\"\"\"") { return String(lines[0].dropLast(3)) }
            while let next = LineEditor.readLine(prompt: "… ", interrupt: interrupt) {
                if next.trimmingCharacters(in: .whitespaces).hasSuffix("\"\"\"") {
                    lines.append(String(next.trimmingCharacters(in: .whitespaces).dropLast(3)))
                    break
                }
                lines.append(next)
            }
            return lines.joined(separator: "\n").trimmingCharacters(in: .newlines)
        }
        while line.hasSuffix("\\") {
            line.removeLast()
            guard let next = LineEditor.readLine(prompt: "… ", interrupt: interrupt) else { break }
            line += "\n" + next
        }
        return line
    }

    /// A user turn: the reply streams to stdout; Ctrl-C stops it.
    func send(_ text: String) {
        answer { try conversation.reply(to: text, maxTokens: maxTokens, shouldStop: $0, events: $1) }
    }

    /// Runs one reply (`reply` gets the stop test and the events to draw) and says how it ended.
    func answer(_ reply: (@escaping () -> Bool, (ConversationEvent) -> Void) throws -> Conversation.ReplyStats?) {
        interrupt.clear()
        let view = ConversationView()
        do {
            guard let stats = try reply({ self.interrupt.isRaised }, view.show) else { return }
            view.finish()
            lastReply = stats
            if stats.unread > 0 {
                let read = stats.promptTokens - stats.unread
                Terminal.note(Terminal.dim("(stopped while reading: the first \(read) of \(stats.promptTokens) tokens are in the conversation; no reply)"))
            } else if stats.reason == .interrupted {
                Terminal.note(Terminal.dim("(stopped)"))
            } else if stats.reason == .maxTokens && stats.tokens > 0 {
                // A reply cut short looked finished: say where it stopped and how to go on.
                Terminal.note(Terminal.dim("(cut at \(maxTokens) tokens: /set max-tokens N for longer replies)"))
            }
            if stats.reason == .contextFull { Terminal.note("(the context is full: /reset to start over)") }
            if Terminal.stdoutIsTTY { Terminal.note(Terminal.dim(statusLine(stats))) }
            autosave()
        } catch {
            view.finish()
            Terminal.note("error: \(error)")
        }
    }

    /// "[42 tokens, 95.1 t/s · cache 1234/2052 · memory 12 blocks · recalled 8]"
    func statusLine(_ s: Conversation.ReplyStats) -> String {
        let cache = conversation.generator.cache
        var parts = [String(format: "%d tokens, %.1f t/s", s.tokens, s.seconds > 0 ? Double(s.tokens) / s.seconds : 0),
                     "cache \(cache.count)/\(cache.capacity)"]
        if let memory = cache.memory {
            parts.append("memory \(memory.blocks) blocks")
            parts.append("recalled \(memory.lastRecall().count)")
        }
        return "[" + parts.joined(separator: " · ") + "]"
    }

    private func dispatch(_ text: String) {
        let body = text.dropFirst()
        let name = String(body.prefix { !$0.isWhitespace })
        let argument = body.dropFirst(name.count).trimmingCharacters(in: .whitespaces)
        guard let command = REPL.command(named: name) else {
            let near = REPL.commands.filter { $0.name.hasPrefix(name.prefix(2)) }.map { "/" + $0.name }
            Terminal.note("unknown command /\(name)" + (near.isEmpty ? "" : " — did you mean \(near.joined(separator: " or "))?") + " (/help lists the commands)")
            return
        }
        do {
            try command.run(self, argument)
        } catch {
            Terminal.note("error: \(error)")
        }
    }

    /// Tab completion: command names after "/", then what the command takes.
    private func complete(line: String, start: Int, word: String) -> [String]? {
        if line.hasPrefix("/") && start <= 1 {
            return REPL.commands.flatMap { [$0.name] + $0.aliases }.map { "/" + $0 }.filter { $0.hasPrefix("/" + word) || $0.hasPrefix(word) }
                .map { word.hasPrefix("/") ? $0 : String($0.dropFirst()) }
        }
        guard line.hasPrefix("/") else { return [] }
        let name = String(line.dropFirst().prefix { !$0.isWhitespace })
        switch REPL.command(named: name)?.argument {
        case .session?: return store.list().map(\.name).filter { $0.hasPrefix(word) }
        case .setting?: return REPL.settings.map(\.name).filter { $0.hasPrefix(word) }
        case .file?: return nil
        case .prompt?:
            guard word.hasPrefix("@") else { return nil }
            return PromptLibrary.names().map { "@" + $0 }.filter { $0.hasPrefix(word) }
        default: return []
        }
    }

    /// The lock to attach `name` with: the one held if it is attached already, else a new one
    /// (refused while another process holds it).
    func lock(_ name: String) throws -> SessionLock? {
        name == sessionName ? attached : try SessionLock(name, in: store)
    }

    /// Starts a new conversation that no session holds (/reset, /system): the attached one
    /// keeps the conversation as last saved. Before, the next reply's autosave wrote the new
    /// conversation over the saved one without a word.
    func detach() -> String {
        guard let name = sessionName else { return "" }
        autosave()
        attached = nil
        return "; session \(name) keeps the earlier one (/save NAME keeps this one)"
    }

    /// Saves the attached session, if there is one; a failure is reported and the chat goes on.
    func autosave() {
        guard let name = sessionName else { return }
        do {
            try conversation.save(to: try store.pathForSaving(name), encoding: encoding)
        } catch {
            Terminal.note("error: \(error)")
        }
    }
}
