import ArgumentParser
import Engine
import Foundation

/// `scroll needle`: questions about made-up facts hidden in natural text (Engine/Evaluation/
/// Needle.swift), asked through pipe mode's own path (Conversation.reply with the document),
/// greedy unless --sampled. Per case: answered or not, the rank of the fact's unit by the question's words,
/// whether it was read again, how many layer-heads of the block memory recalled it, and whether
/// the model answers the question with the fact alone as the document: how well this model
/// reads the fact and the wording at all, so that a long document's misses can be told from the
/// model's (given "Casimir Oyelaran has a goat called Bramble." alone, it answered "What name
/// did Casimir give the goat?" with "The name of the goat is not specified.").
struct NeedleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "needle", abstract: "Natural-text retrieval: questions about facts hidden in long documents.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var cacheOptions: CacheOptions
    @Option(name: .customLong("haystack"), parsing: .upToNextOption,
            help: "Text files to cut documents from, taken in turn (scripts/needle-corpus.sh makes some).")
    var haystacks: [String] = []
    @Option(name: .customLong("tokens"), parsing: .upToNextOption, help: "Document lengths in tokens (one or more).")
    var lengths: [Int] = [8192]
    @Option(help: "Documents per length; their facts' depths are spread evenly over 0–1.")
    var cases = 10
    @Option(help: "Facts per document, asked one after another in the same conversation (the first with the document, as pipe mode asks).")
    var questions = 1
    @Option(help: "Seed for the texts' offsets, the facts and the wordings.")
    var seed: UInt64 = 1
    @Option(name: [.customShort("n"), .long], help: "Tokens per answer.")
    var maxTokens = 48
    @Flag(help: "Answer with the chat's default sampling (seeded from --seed) rather than greedily: what a user of pipe mode gets.")
    var sampled = false
    @Flag(help: "Print the results as JSON.")
    var json = false

    func validate() throws {
        guard !haystacks.isEmpty else { throw ValidationError("give at least one --haystack FILE (scripts/needle-corpus.sh makes some)") }
        guard lengths.allSatisfy({ (256...10_000_000).contains($0) }) else { throw ValidationError("--tokens must be from 256 to 10000000") }
        guard (1...10_000).contains(cases) else { throw ValidationError("--cases must be from 1 to 10000") }
        guard (1...16).contains(questions) else { throw ValidationError("--questions must be from 1 to 16") }
        guard (1...4096).contains(maxTokens) else { throw ValidationError("--max-tokens must be from 1 to 4096") }
    }

    struct Case: Codable {
        let tokens: Int, file: String, depth: Double, turn: Int
        let fact: NeedleFact
        let reply: String
        let answered: Bool
        /// The fact's stream position, and whether it had left the window when asked.
        let position: Int, evicted: Bool
        /// Rank of the fact's unit by the question's words (1 = first), nil: not matched.
        let wordRank: Int?
        let reread: Bool
        /// Answered with the fact's statement alone as the document.
        let answeredAlone: Bool
        /// Layer-heads of the block memory that recalled the fact's block at the last ranking, and its rank by picks.
        let memoryPicks: Int?, memoryRank: Int?
        let seconds: Double
    }

    func run() throws {
        try reportingErrors {
            let texts = try haystacks.map { path -> (String, String) in
                guard let data = FileManager.default.contents(atPath: path) else { throw EngineError.invalidArgument("cannot read \(path)") }
                return ((path as NSString).lastPathComponent, String(decoding: data, as: UTF8.self))
            }
            let (model, tokenizer) = try modelOptions.load(cacheCapacity: cacheOptions.requestedCapacity(document: true))
            // Greedy and unpenalized by default: that measures finding and using a passage,
            // not sampling; --sampled measures both, as pipe mode answers.
            var sampling = SamplerSettings()
            if sampled {
                sampling.seed = seed
            } else {
                sampling.temperature = 0
                sampling.repeatPenalty = 1
            }
            // As pipe mode asks: a model without a chat template Scroll knows continues the text.
            let templateSource = model.gguf.metadata["tokenizer.chat_template"]?.string
            let raw = ChatTemplate.format(tokenizer: tokenizer, templateSource: templateSource) == nil
            func newConversation() throws -> Conversation {
                let c = try Conversation(model: model, tokenizer: tokenizer, cache: try cacheOptions.makeCache(for: model, document: true),
                                         sampling: sampling, systemPrompt: nil, raw: raw, templateSource: templateSource,
                                         rereadPassages: cacheOptions.reread)
                c.keepsUndo = false
                return c
            }
            var rng = RandomGenerator(seed: seed)
            var results: [Case] = []
            var description = ""
            for length in lengths {
                for c in 0..<cases {
                    let (file, text) = texts[c % texts.count]
                    // Facts at depths spread over the document; with several, each case shifts them.
                    let depths = (0..<questions).map { q -> Double in
                        let slot = Double(c * questions + q) / Double(max(1, cases * questions - 1))
                        return questions == 1 ? slot : (Double(q) + slot) / Double(questions) }
                    // Drawn again when a subject repeats: seed 302 put two keepers on one
                    // lighthouse, and the second question had two right answers.
                    var facts: [NeedleFact] = []
                    for q in depths.indices {
                        var fact = Needle.fact(&rng, paraphrased: (c + q) % 2 == 1)
                        while facts.contains(where: { $0.subject == fact.subject }) { fact = Needle.fact(&rng, paraphrased: (c + q) % 2 == 1) }
                        facts.append(fact)
                    }
                    var document = ""
                    var offsets: [Int] = []
                    // The first fact is placed in the text; the others in turn into what came before.
                    let (hay, at) = Needle.haystack(from: text, tokens: length, depth: depths[0], statement: facts[0].statement,
                                                    tokenizer: tokenizer, rng: &rng)
                    document = hay
                    offsets = [at]
                    for q in 1..<max(1, facts.count) {
                        let insert = Self.paragraphStart(in: document, near: depths[q], avoiding: offsets)
                        let s = facts[q].statement + "\n\n"
                        document.insert(contentsOf: s, at: document.index(document.startIndex, offsetBy: insert))
                        offsets = offsets.map { $0 >= insert ? $0 + s.count : $0 } + [insert]
                    }
                    let conversation = try newConversation()
                    description = CacheOptions.describe(conversation.generator.cache) + (conversation.passages == nil ? "" : ", passages re-read")
                    // Where the document starts in the stream: after the system turn and "<|im_start|>user\n".
                    let documentStart = conversation.turnHeadTokens(firstTurn: true)
                    for (turn, fact) in facts.enumerated() {
                        let start = Date()
                        let historyBefore = conversation.generator.history.count
                        var reply = ""
                        let view = ConversationView(progress: !json)
                        try conversation.reply(to: fact.question, document: turn == 0 ? document : nil, maxTokens: maxTokens) { event in
                            if case .text(let piece) = event { reply += piece } else { view.show(event) }
                        }
                        view.finish()
                        let position = documentStart + tokenizer.encode(String(document.prefix(offsets[turn]))).count
                            + tokenizer.encode(fact.statement).count / 2
                        // Where the question was read (also without re-reading, for the "evicted" column).
                        let questionAt = conversation.lastRecallPosition
                            ?? (turn == 0 ? documentStart + tokenizer.encode(document).count : historyBefore)
                        let seconds = Date().timeIntervalSince(start)
                        var aloneReply = ""
                        try newConversation().reply(to: fact.question, document: fact.statement, maxTokens: maxTokens) { event in
                            if case .text(let piece) = event { aloneReply += piece }
                        }
                        results.append(measure(conversation, fact: fact, reply: reply, answeredAlone: fact.isAnswered(by: aloneReply),
                                               position: position, questionAt: questionAt, length: length, file: file,
                                               depth: depths[turn], turn: turn, seconds: seconds))
                        if !json { Terminal.write(Self.line(results.last!)) }
                    }
                }
            }
            try report(results, description: description)
        }
    }

    /// The start of the paragraph nearest `depth` (0–1) in `text`, as a character offset, not
    /// at an offset already used.
    static func paragraphStart(in text: String, near depth: Double, avoiding used: [Int]) -> Int {
        let chars = Array(text)
        var starts = [0]
        for i in 2..<max(2, chars.count) where chars[i - 1] == "\n" && chars[i - 2] == "\n" { starts.append(i) }
        let target = Int(depth * Double(chars.count))
        return starts.filter { !used.contains($0) }.min { abs($0 - target) < abs($1 - target) } ?? 0
    }

    private func measure(_ conversation: Conversation, fact: NeedleFact, reply: String, answeredAlone: Bool, position: Int, questionAt: Int,
                         length: Int, file: String,
                         depth: Double, turn: Int, seconds: Double) -> Case {
        let cache = conversation.generator.cache
        let window = cache.policy.window ?? Int.max
        let evicted = position >= cache.policy.sinks && position < questionAt - window
        var wordRank: Int?, reread = false, picks: Int?, memoryRank: Int?
        if let index = conversation.passages {
            let unit = (position - index.origin) / index.unit
            wordRank = index.rank(fact.question, limit: Int.max).firstIndex { $0.unit == unit }.map { $0 + 1 }
            reread = conversation.lastPassages.contains { $0.source.contains(position) }
        }
        if let memory = cache.memory, evicted {
            let block = (position - cache.policy.sinks) / memory.settings.blockSize
            let recalls = memory.lastRecall()
            picks = recalls.first { $0.block == block }?.picks ?? 0
            memoryRank = recalls.firstIndex { $0.block == block }.map { $0 + 1 }
        }
        return Case(tokens: length, file: file, depth: depth, turn: turn, fact: fact, reply: reply,
                    answered: fact.isAnswered(by: reply), position: position, evicted: evicted, wordRank: wordRank, reread: reread,
                    answeredAlone: answeredAlone, memoryPicks: picks, memoryRank: memoryRank, seconds: seconds)
    }

    static func line(_ c: Case) -> String {
        let where_ = c.evicted ? "evicted" : "in window"
        let words = c.wordRank.map { "word rank \($0)" } ?? "no word match"
        let memory = c.memoryPicks.map { "memory \($0) picks" + (c.memoryRank.map { " (rank \($0))" } ?? "") } ?? ""
        let reply = c.reply.replacingOccurrences(of: "\n", with: " ").prefix(90)
        return String(format: "%6d %@ depth %.2f q%d %@  %@ [%@%@, %@; %@; alone %@]  %@ → %@  (%.0f s)\n", c.tokens, c.file, c.depth, c.turn + 1,
                      c.fact.kind, c.answered ? "ok  " : "MISS", words, c.reread ? ", re-read" : "", where_, memory,
                      c.answeredAlone ? "ok" : "MISS",
                      c.fact.question, String(reply), c.seconds)
    }

    private func report(_ results: [Case], description: String) throws {
        if json {
            struct Report: Codable { let cache: String; let cases: [Case] }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(Report(cache: description, cases: results)), as: UTF8.self))
            return
        }
        print(description)
        print("| tokens | cases | answered | fact evicted: answered | fact re-read | paraphrased: answered | fact alone: answered | answered where the fact alone is |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for length in lengths {
            let group = results.filter { $0.tokens == length }
            let evicted = group.filter(\.evicted), para = group.filter(\.fact.paraphrased)
            func share(_ g: [Case]) -> String { "\(g.filter(\.answered).count)/\(g.count)" }
            let alone = group.filter(\.answeredAlone)
            print("| \(length) | \(group.count) | \(share(group)) | \(share(evicted)) | \(group.filter(\.reread).count)/\(group.count) | \(share(para)) "
                  + "| \(alone.count)/\(group.count) | \(share(alone)) |")
        }
        let all = results.filter(\.answered).count
        print(String(format: "overall %d/%d (%.0f%%)", all, results.count, 100 * Double(all) / Double(max(1, results.count))))
    }
}
