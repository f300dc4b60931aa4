import ArgumentParser
import Engine
import Foundation

/// `scroll tokenize TEXT`: the token ids of a text, printed as `llama-tokenize --ids` prints
/// them, so that the two tokenizers can be held side by side. Text that looks like a control
/// token ("<|im_end|>") is plain text here, as in everything Scroll reads from a user
/// (`llama-tokenize --no-parse-special`); the model's BOS comes first where it adds one.
struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize", abstract: "Print a text's token ids (as llama-tokenize --ids does).")

    @Argument(help: "The text (or - to read it from stdin).")
    var text: String
    @Option(name: [.short, .long], help: "A GGUF model: a path, or a name that `scroll models` lists (default: models/\(ModelLocator.defaultFileName)).")
    var model: String?
    @Flag(help: "One line per token: its id and its text.")
    var pieces = false

    func run() throws {
        try reportingErrors {
            let gguf = try GGUFFile(path: try model.map(ModelLocator.resolve) ?? ModelLocator.defaultModelPath())
            let tokenizer = try Tokenizer(gguf: gguf)
            let input = text == "-" ? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self) : text
            let ids = tokenizer.leadingBOS + tokenizer.encode(input)
            if pieces {
                for id in ids { print(String(format: "%6d -> '%@'", id, Terminal.escaped(tokenizer.decode([id])))) }
            } else {
                print("[" + ids.map(String.init).joined(separator: ", ") + "]")
            }
        }
    }
}
