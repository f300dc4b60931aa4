import ArgumentParser
import Engine
import Foundation

@main
struct Scroll: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scroll",
        abstract: "A terminal chat with a local LLM that never runs out of context.",
        version: "scroll \(Scroll.version) (session files: format \(SessionFile.version))",
        subcommands: [Chat.self, SessionsCommand.self, Bench.self, Ppl.self, PasskeyCommand.self, NeedleCommand.self, TokenizeCommand.self, ModelsCommand.self],
        defaultSubcommand: Chat.self)

    /// The release: bumped when what a user sees changes.
    static let version = "0.10.0"

    /// ArgumentParser's own errors in Scroll's format: "scroll: error: …" like every other
    /// error (they came as "Error: …"), with its usage line after; help and --version as it
    /// prints them.
    static func main() {
        if [["--help"], ["-h"], ["help"]].contains(Array(CommandLine.arguments.dropFirst())) {
            print(help, terminator: "")
            return
        }
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

    /// `scroll --help`: usage first, then the options of the default command — what
    /// `scroll "question"` and the REPL take, so a user needs no `scroll help chat` — the
    /// environment, and the subcommands. ArgumentParser's own layout put its USAGE line
    /// after the 40 chat options, in the middle of the page.
    static var help: String {
        let chat = Chat.helpMessage(columns: 78), root = helpMessage(columns: 78)
        guard let options = chat.range(of: "ARGUMENTS:"), let own = chat.range(of: "OPTIONS:\n  -h, --help"),
              let subcommands = root.range(of: "SUBCOMMANDS:") else { return root }
        return """
            OVERVIEW: \(configuration.abstract)

            USAGE: scroll [<options>] [<question>]          one answer; the REPL without a question
                   cat FILE | scroll [<options>] <question>  a question about a document
                   scroll <subcommand> [<options>]

            \(chat[options.lowerBound..<own.lowerBound].trimmingCharacters(in: .newlines))

            OPTIONS:
              --version               Show the version.
              -h, --help              Show help information.

            \(Chat.environment)

            \(root[subcommands.lowerBound...].trimmingCharacters(in: .newlines))

            """
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
