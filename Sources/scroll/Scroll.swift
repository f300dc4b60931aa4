import ArgumentParser
import Engine
import Foundation

@main
struct Scroll: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "scroll",
        abstract: "A terminal chat with a local LLM that never runs out of context.",
        subcommands: [Chat.self, SessionsCommand.self, Bench.self, Ppl.self, PasskeyCommand.self],
        defaultSubcommand: Chat.self)
}

/// Runs `body`, turning engine errors into one line on stderr and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as EngineError {
        Terminal.note("scroll: error: \(e.description)")
        throw ExitCode(1)
    } catch let e as Zstd.Failure {
        Terminal.note("scroll: error: \(e.description)")
        throw ExitCode(1)
    }
}
