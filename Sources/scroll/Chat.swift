import ArgumentParser
import Engine
import Foundation

/// `scroll [QUESTION]`: one answer, or the REPL when there is no question and stdin is a
/// terminal. Piped stdin is a document the question is about.
struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Answer a question, or chat in the REPL (the default command).")

    @Argument(help: "The question. Without one, Scroll starts the REPL (or reads the question from piped stdin).")
    var question: String?

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var cacheOptions: CacheOptions
    @OptionGroup var sampling: SamplingOptions
    @OptionGroup var prompt: PromptOptions

    func run() throws {
        try reportingErrors {
            var document: String?
            if !Terminal.stdinIsTTY {
                let data = FileHandle.standardInput.readDataToEndOfFile()
                // Binary or invalid UTF-8 input is read leniently: bad bytes become U+FFFD.
                let text = String(decoding: data, as: UTF8.self)
                if !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { document = text }
            }
            let (model, tokenizer) = try modelOptions.load(cacheCapacity: cacheOptions.requestedCapacity)
            let conversation = try Conversation(model: model, tokenizer: tokenizer, cache: try cacheOptions.makeCache(for: model),
                                                sampling: sampling.settings,
                                                systemPrompt: try prompt.systemPrompt(), raw: prompt.raw,
                                                templateSource: model.gguf.metadata["tokenizer.chat_template"]?.string)
            switch (question, document) {
            case (let q?, let doc?):
                try oneShot(conversation, doc + "\n\n" + q)
            case (let q?, nil):
                try oneShot(conversation, q)
            case (nil, let doc?):
                try oneShot(conversation, doc)
            case (nil, nil):
                guard Terminal.stdinIsTTY else { throw EngineError.invalidArgument("no question given and stdin is empty") }
                try REPL(conversation: conversation, maxTokens: sampling.maxTokens).run()
            }
        }
    }

    private func oneShot(_ conversation: Conversation, _ text: String) throws {
        let interrupt = InterruptFlag()
        interrupt.install()
        try conversation.reply(to: text, maxTokens: sampling.maxTokens) { piece in
            Terminal.write(piece)
            return !interrupt.isRaised
        }
        Terminal.write("\n")
    }
}
