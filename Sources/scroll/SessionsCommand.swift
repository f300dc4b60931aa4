import ArgumentParser
import Engine
import Foundation

/// `scroll sessions ls|rm|show`: the saved sessions, without loading a model.
struct SessionsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sessions",
        abstract: "List, show or remove saved sessions (in sessions/, or $SCROLL_SESSIONS).",
        subcommands: [List.self, Show.self, Remove.self],
        defaultSubcommand: List.self)

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List sessions: name, tokens, size, last used, model.")
        func run() throws { print(SessionStore.located().table()) }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "show", abstract: "Show a session's settings and conversation.")
        @Argument(help: "The session name.") var name: String
        func run() throws {
            try reportingErrors {
                let path = try SessionStore.located().path(name)
                let (h, c) = try SessionFile.conversation(at: path)
                let f = h.fingerprint
                print("session \(name): \(h.tokens) tokens (\(h.memoryTokens) in block memory), \(h.messages) messages")
                print("model: \(Terminal.escaped(h.model)) (\(f.architecture), \(f.layers) layers, vocabulary \(f.vocab))")
                print("cache: \(f.window.map { "sinks \(f.sinks) + window \($0)" } ?? "dense \(f.capacity)"), KV \(f.kv), stored \(h.kvEncoding.rawValue); RoPE \(f.rope); memory \(f.memory ?? "off")")
                print("sampler: temp \(c.sampler.temperature), top-k \(c.sampler.topK), top-p \(c.sampler.topP), min-p \(c.sampler.minP), repeat-penalty \(c.sampler.repeatPenalty), seed \(c.sampler.seed)")
                print("saved: \(Date(timeIntervalSince1970: h.savedAt))")
                // The system message is the conversation's first (it was printed twice, once
                // from the saved system prompt); a session without one shows the model's default.
                if c.messages.first?.role != .system { print("\n[system] " + (c.systemPrompt.map { Terminal.escaped($0, lines: true) } ?? "(the model's default)")) }
                for m in c.messages { print("\n[\(m.role.rawValue)] \(Terminal.escaped(m.content, lines: true))") }
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "rm", abstract: "Remove sessions.")
        @Argument(help: "Session names.") var names: [String]
        func run() throws {
            try reportingErrors {
                let store = SessionStore.located()
                for name in names {
                    let path = try store.path(name)
                    // Not while another scroll has it attached: its next save would bring it back.
                    let lock = try SessionLock(name, in: store)
                    defer { withExtendedLifetime(lock) { if let file = try? store.lockPath(name) { unlink(file) } } }
                    guard store.exists(name) else { throw EngineError.invalidArgument("no session \(name)") }
                    guard unlink(path) == 0 else {
                        throw EngineError.invalidArgument("cannot remove session \(name): \(String(cString: strerror(errno)))")
                    }
                    print("removed \(name)")
                }
            }
        }
    }
}
extension SessionFile.KVEncoding: ExpressibleByArgument {}
