import ArgumentParser
import Engine
import Foundation

@main
struct Scroll: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scroll",
        abstract: "A terminal chat with a local LLM that never runs out of context.",
        discussion: Scroll.chatOptions,
        version: "scroll \(Scroll.version) (session files: format \(SessionFile.version))",
        subcommands: [Chat.self, SessionsCommand.self, Bench.self, Ppl.self, PasskeyCommand.self, NeedleCommand.self],
        defaultSubcommand: Chat.self)

    /// The release: bumped when what a user sees changes.
    static let version = "0.9.0"

    /// ArgumentParser's own errors in Scroll's format: "scroll: error: …" like every other
    /// error (they came as "Error: …"), with its usage line after; help and --version as it
    /// prints them.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            let code = exitCode(for: error)
            let message = fullMessage(for: error)
            if code == .success || message.isEmpty || error is ExitCode { exit(withError: error) }
            let text = message.hasPrefix("Error: ") ? String(message.dropFirst("Error: ".count)) : message
            Terminal.note("scroll: error: " + text.escapingControls(keepingLines: true))
            Foundation.exit(code.rawValue)
        }
    }

    /// `scroll --help` also lists the options of the default command: they are what
    /// `scroll "question"` and the REPL take, and a user should not need `scroll help chat`.
    static var chatOptions: String {
        let help = Chat.helpMessage(columns: 78)
        guard let start = help.range(of: "ARGUMENTS:") ?? help.range(of: "OPTIONS:") else { return "" }
        return "Without a subcommand, scroll runs chat:\n\n" + help[start.lowerBound...].trimmingCharacters(in: .newlines)
            + "\n\n" + Chat.environment
    }
}

/// Runs `body`, turning engine errors into one line on stderr and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as EngineError {
        Terminal.note("scroll: error: \(Terminal.escaped(e.description))")
        throw ExitCode(1)
    } catch let e as Zstd.Failure {
        Terminal.note("scroll: error: \(Terminal.escaped(e.description))")
        throw ExitCode(1)
    }
}
