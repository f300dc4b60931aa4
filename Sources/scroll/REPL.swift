import Engine
import Foundation

/// The interactive loop: each line is a user turn or a /command; /quit or Ctrl-D leaves;
/// Ctrl-C stops a reply. A named session is saved after each reply and on the way out.
final class REPL {
    let conversation: Conversation
    let maxTokens: Int
    let store: SessionStore
    let encoding: SessionFile.KVEncoding
    /// The session replies are saved to (--session, /save NAME or /load NAME).
    private(set) var sessionName: String?
    private var done = false

    init(conversation: Conversation, maxTokens: Int, store: SessionStore, encoding: SessionFile.KVEncoding, sessionName: String?) {
        self.conversation = conversation
        self.maxTokens = maxTokens
        self.store = store
        self.encoding = encoding
        self.sessionName = sessionName
    }

    /// One slash command. The table drives dispatch and /help (and, with #8, completion).
    struct Command {
        let name: String
        let arguments: String
        let help: String
        let run: (REPL, [String]) throws -> Void
    }

    static let commands: [Command] = [
        Command(name: "help", arguments: "", help: "list the commands") { repl, _ in repl.showHelp() },
        Command(name: "save", arguments: "[NAME]", help: "save the conversation (to the current session, or as NAME, which becomes current)") { repl, args in
            try repl.save(as: args.first)
        },
        Command(name: "load", arguments: "NAME", help: "resume a saved session (the current conversation is kept if it cannot be read)") { repl, args in
            guard let name = args.first else { throw EngineError.invalidArgument("usage: /load NAME (see /sessions)") }
            try repl.load(name)
        },
        Command(name: "sessions", arguments: "", help: "list saved sessions: name, tokens, size, last used, model") { repl, _ in
            Terminal.note(repl.store.table())
        },
        Command(name: "reset", arguments: "", help: "clear the conversation and the cache") { repl, _ in
            repl.conversation.reset()
            Terminal.note("conversation cleared")
        },
        Command(name: "quit", arguments: "", help: "leave (a named session is saved first; Ctrl-D does the same)") { repl, _ in repl.done = true },
    ]

    func run() throws {
        let interrupt = InterruptFlag()
        interrupt.install()
        Terminal.note("Scroll — \(conversation.generator.model.config.architecture) model loaded. Type a message; /help lists commands, /quit or Ctrl-D leaves.")
        while !done, let line = LineEditor.readLine(prompt: "> ") {
            let text = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if text.isEmpty { continue }
            if text.hasPrefix("/") {
                dispatch(text)
                continue
            }
            interrupt.clear()
            do {
                let reason = try conversation.reply(to: text, maxTokens: maxTokens) { piece in
                    Terminal.write(piece)
                    return !interrupt.isRaised
                }
                Terminal.write("\n")
                if reason == .contextFull { Terminal.note("(context is full: /reset to start over)") }
                autosave()
            } catch let e as EngineError {
                Terminal.note("error: \(e.description)")
            }
        }
        if !done { Terminal.write("\n") }
        autosave()
    }

    private func dispatch(_ text: String) {
        let words = text.dropFirst().split(separator: " ").map(String.init)
        let name = words.first ?? ""
        guard let command = Self.commands.first(where: { $0.name == name }) ?? (name == "exit" ? Self.commands.last : nil) else {
            Terminal.note("unknown command /\(name) (/help lists the commands)")
            return
        }
        do {
            try command.run(self, Array(words.dropFirst()))
        } catch let e as EngineError {
            Terminal.note("error: \(e.description)")
        } catch {
            Terminal.note("error: \(error)")
        }
    }

    private func showHelp() {
        for c in Self.commands {
            let usage = "/\(c.name)" + (c.arguments.isEmpty ? "" : " \(c.arguments)")
            Terminal.note(usage.padding(toLength: 16, withPad: " ", startingAt: 0) + c.help)
        }
    }

    private func save(as name: String?) throws {
        guard let target = name ?? sessionName else { throw EngineError.invalidArgument("usage: /save NAME (no session is open yet)") }
        let path = try store.pathForSaving(target)
        try conversation.save(to: path, encoding: encoding)
        sessionName = target
        let bytes = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0
        Terminal.note("saved session \(target): \(conversation.generator.cache.tokensSeen) tokens, \(SessionStore.size(bytes ?? 0))")
    }

    private func load(_ name: String) throws {
        let path = try store.path(name)
        let header = try conversation.load(from: path)
        sessionName = name
        Terminal.note("loaded session \(name): \(header.tokens) tokens, \(header.messages) messages")
    }

    /// Saves the named session, if there is one; a failure is reported and the chat goes on.
    private func autosave() {
        guard let name = sessionName else { return }
        do {
            try conversation.save(to: try store.pathForSaving(name), encoding: encoding)
        } catch let e as EngineError {
            Terminal.note("error: \(e.description)")
        } catch {
            Terminal.note("error: \(error)")
        }
    }
}
