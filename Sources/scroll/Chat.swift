import ArgumentParser
import Engine
import Foundation

/// `scroll [QUESTION]`: one answer, or the REPL when there is no question and stdin is a
/// terminal. Piped stdin is a document the question is about.
struct Chat: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "chat",
        abstract: "Answer a question, or chat in the REPL (the default command).",
        discussion: Chat.environment)

    static let environment = """
            ENVIRONMENT:
              SCROLL_MODEL      the model when -m is not given
              SCROLL_MODELS     a folder of models -m NAME also looks in
              SCROLL_SESSIONS   the sessions folder (default: sessions/ beside models/)
              SCROLL_HISTORY    the REPL's history file (default: ~/.scroll_history)
              XDG_CONFIG_HOME   its scroll/prompts/ holds your prompts (default: ~/.config)
              TMPDIR            the block memory's file, past --memory-budget
              NO_COLOR          no colours on stderr
              SCROLL_NO_AVX512  run the AVX2 kernels on an AVX-512 host (for testing)
            """

    @Argument(help: "The question. Without one, Scroll starts the REPL (or reads the question from piped stdin).")
    var question: String?

    // --help lists the groups in this order: what a chat needs most first.
    @OptionGroup(title: "Conversation") var prompt: PromptOptions
    @OptionGroup(title: "Sampling") var sampling: SamplingOptions
    @OptionGroup(title: "Sessions") var sessions: SessionOptions
    @OptionGroup(title: "Cache and block memory") var cacheOptions: CacheOptions
    @OptionGroup(title: "Model and RoPE scaling") var modelOptions: ModelOptions

    var session: String? { sessions.session }
    var sessionKV: SessionFile.KVEncoding { sessions.sessionKV }

    func run() throws {
        try reportingErrors {
            // From here on Ctrl-C raises a flag instead of ending the program: it stops the
            // reading of a document or a reply; the REPL also clears the line with it.
            let interrupt = InterruptFlag()
            interrupt.install()
            let store = SessionStore.located()
            // The session is locked before anything is read: a second writer is refused at once.
            let lock = try session.map { try SessionLock($0, in: store) }
            var document: String?
            if !Terminal.stdinIsTTY {
                let data = FileHandle.standardInput.readDataToEndOfFile()
                // Invalid UTF-8 is read leniently (bad bytes become U+FFFD); input that is
                // mostly not text at all is refused with one line rather than fed to the model.
                let text = String(decoding: data, as: UTF8.self)
                if Self.looksBinary(text) {
                    throw EngineError.invalidArgument("stdin looks like binary data (\(data.count) bytes), not a text document")
                }
                if !text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty { document = text }
            }
            let (modelOptions, cacheOptions) = try adoptingSession(in: store)
            let (model, tokenizer) = try modelOptions.load(cacheCapacity: cacheOptions.requestedCapacity(document: document != nil))
            // A model without a chat template Scroll knows (a base model) completes text, and says so.
            let templateSource = model.gguf.metadata["tokenizer.chat_template"]?.string
            let raw = prompt.raw || (prompt.template == nil && ChatTemplate.format(tokenizer: tokenizer, templateSource: templateSource) == nil)
            if raw && !prompt.raw {
                Terminal.note("scroll: \(Terminal.escaped((model.gguf.path as NSString).lastPathComponent)) has no chat template Scroll knows (\(ChatTemplate.Format.allCases.map(\.rawValue).joined(separator: ", "))): it continues the text, as with --raw")
            }
            let conversation = try Conversation(model: model, tokenizer: tokenizer,
                                                cache: try cacheOptions.makeCache(for: model, document: document != nil),
                                                sampling: sampling.settings,
                                                systemPrompt: try prompt.systemPrompt(), raw: raw,
                                                templateSource: templateSource, templateFormat: prompt.template,
                                                rereadPassages: cacheOptions.reread)
            if let name = session {
                let path = try store.pathForSaving(name)
                if FileManager.default.fileExists(atPath: path) {
                    let header = try conversation.load(from: path, events: ConversationView().show)
                    // Flags given now override the session's sampler; its RNG state goes on
                    // unless a --seed restarts it.
                    var sampler = conversation.generator.sampler
                    sampler.settings = sampling.overriding(sampler.settings)
                    if let seed = sampling.seed { sampler.rng = RandomGenerator(seed: seed) }
                    conversation.generator.sampler = sampler
                    Terminal.note("scroll: resumed session \(name): \(header.tokens) tokens, \(header.messages) messages")
                } else if Terminal.stdinIsTTY && question == nil {
                    Terminal.note("scroll: new session \(name)")
                }
            }
            // Only the REPL undoes.
            conversation.keepsUndo = question == nil && document == nil
            // From here a SIGHUP or SIGTERM stops the work in progress, which is then saved.
            interrupt.catchTermination()
            switch (question, document) {
            case (let q?, let doc?):
                try oneShot(conversation, q, document: doc, interrupt: interrupt)
            case (let q?, nil):
                try oneShot(conversation, q, interrupt: interrupt)
            case (nil, let doc?) where session != nil:
                // Read and keep: the document waits in the session for questions.
                let view = ConversationView()
                let (read, total) = try conversation.addDocument(doc, name: "a document", shouldStop: { interrupt.isRaised }, events: view.show)
                view.finish()
                if read < total { throw Chat.stoppedReading(read, of: total, session: session, interrupt: interrupt) }
                Terminal.note("scroll: read \(total) tokens into session \(session!); ask with: scroll --session \(session!) \"QUESTION\"")
            case (nil, let doc?):
                try oneShot(conversation, doc, interrupt: interrupt)
            case (nil, nil):
                guard Terminal.stdinIsTTY else { throw EngineError.invalidArgument("no question given and stdin is empty") }
                try REPL(conversation: conversation, maxTokens: sampling.maxTokens, store: store, encoding: sessionKV,
                         attached: lock, interrupt: interrupt).run()
                interrupt.exitIfTerminating()
                return
            }
            // One answer: a named session keeps it (and the document) for later.
            if let name = session { try conversation.save(to: try store.pathForSaving(name), encoding: sessionKV) }
            withExtendedLifetime(lock) { interrupt.exitIfTerminating() }
        }
    }

    /// The model and cache options for this run: a session being resumed brings the flags it
    /// was saved with, and those given now come after them and win (a conflicting one is then
    /// refused by the load, naming the flag). Resuming used to need them repeated: "it was
    /// saved with --sinks 4 --window 512, this run has --sinks 4 --window 1024".
    private func adoptingSession(in store: SessionStore) throws -> (ModelOptions, CacheOptions) {
        guard let name = session, store.exists(name), let saved = (try? SessionFile.header(at: try store.path(name)))?.flags else {
            return (modelOptions, cacheOptions)
        }
        var given = Array(CommandLine.arguments.dropFirst())
        if given.first == Self.configuration.commandName { given.removeFirst() }
        let adopted = try Chat.parse(saved + given)
        return (adopted.modelOptions, adopted.cacheOptions)
    }

    /// One answer on stdout, nothing else; a progress bar on stderr (if a terminal) while a
    /// long input is read.
    private func oneShot(_ conversation: Conversation, _ text: String, document: String? = nil, interrupt: InterruptFlag) throws {
        let view = ConversationView()
        let stats = try conversation.reply(to: text, document: document, maxTokens: sampling.maxTokens,
                                           shouldStop: { interrupt.isRaised }, events: view.show)
        view.finish()
        if stats.unread > 0 { throw Chat.stoppedReading(stats.promptTokens - stats.unread, of: stats.promptTokens, session: session, interrupt: interrupt) }
        if stats.tokens == 0 { Terminal.write("\n") }
    }

    /// Ctrl-C (or SIGHUP, SIGTERM) while the input was read: no answer, a named session is
    /// not saved (its last save stays as it was), exit status 130 as for any program stopped
    /// by SIGINT (or the end by the other signal).
    static func stoppedReading(_ read: Int, of total: Int, session: String?, interrupt: InterruptFlag) -> ExitCode {
        Terminal.note("scroll: stopped after reading \(read) of \(total) tokens" + (session.map { "; session \($0) was not saved" } ?? ""))
        interrupt.exitIfTerminating()
        return ExitCode(130)
    }

    /// More than 10% of the characters are control characters (other than whitespace) or
    /// U+FFFD from bytes that are not UTF-8: an image, an archive, /dev/urandom.
    static func looksBinary(_ text: String) -> Bool {
        var bad = 0, all = 0
        for scalar in text.unicodeScalars.prefix(65536) {
            all += 1
            if scalar == "\u{FFFD}" || (scalar.value < 32 && !"\n\r\t\u{0C}".unicodeScalars.contains(scalar)) || scalar.value == 127 { bad += 1 }
        }
        return all > 0 && bad * 10 > all
    }
}
