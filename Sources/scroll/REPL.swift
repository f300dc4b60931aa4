import Engine
import Foundation

/// The interactive loop: each line is a user turn; /quit or Ctrl-D leaves; Ctrl-C stops a
/// reply. (The full command table, history file and completion come with #8.)
struct REPL {
    let conversation: Conversation
    let maxTokens: Int

    func run() throws {
        let interrupt = InterruptFlag()
        interrupt.install()
        Terminal.note("Scroll — \(conversation.generator.model.config.architecture) model loaded. Type a message; /reset clears, /quit or Ctrl-D leaves.")
        while let line = LineEditor.readLine(prompt: "> ") {
            let text = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if text.isEmpty { continue }
            switch text {
            case "/quit", "/exit": return
            case "/reset": conversation.reset(); Terminal.note("conversation cleared"); continue
            default:
                if text.hasPrefix("/") { Terminal.note("unknown command \(text) (try /reset or /quit)"); continue }
            }
            interrupt.clear()
            do {
                let reason = try conversation.reply(to: text, maxTokens: maxTokens) { piece in
                    Terminal.write(piece)
                    return !interrupt.isRaised
                }
                Terminal.write("\n")
                if reason == .contextFull { Terminal.note("(context is full: /reset to start over)") }
            } catch let e as EngineError {
                Terminal.note("error: \(e.description)")
            }
        }
        Terminal.write("\n")
    }
}
