import Engine
import Foundation

/// A chat over one generator: user turns go in through the chat template (or as plain text
/// with --raw), replies stream out, and every turn stays in the cache for the next.
final class Conversation {
    let generator: Generator
    let template: ChatTemplate?
    private(set) var systemPrompt: String?
    private(set) var messages: [ChatMessage] = []
    let raw: Bool
    /// Evicted text by its words, for the passages a question is about (nil without a block memory).
    let passages: PassageIndex?

    init(model: Transformer, tokenizer: Tokenizer, cache: KVCache,
         sampling: SamplerSettings, systemPrompt: String?, raw: Bool, templateSource: String?,
         rereadPassages: Bool = true) throws {
        generator = Generator(model: model, tokenizer: tokenizer, sampler: Sampler(settings: sampling), cache: cache)
        template = raw ? nil : try ChatTemplate(tokenizer: tokenizer, templateSource: templateSource)
        self.systemPrompt = systemPrompt
        self.raw = raw
        passages = rereadPassages ? cache.memory.map { PassageIndex(unit: $0.settings.blockSize, origin: cache.policy.sinks) } : nil
        cache.memory?.prepareFile()
        noteMemoryFailure()
    }

    /// What a reply cost.
    struct ReplyStats {
        var reason = Generator.StopReason.maxTokens
        var promptTokens = 0
        var promptSeconds = 0.0
        var tokens = 0
        var seconds = 0.0
        /// Prompt tokens left unread when reading was stopped (Ctrl-C); 0 when all were read.
        var unread = 0
    }

    /// Feeds the user's turn and streams the reply through `onText` (return false to stop).
    /// A `document` (piped stdin) comes first in the turn, the question after it.
    /// `progress` sees (tokens read, tokens to read) while a long turn is read; `shouldStop`
    /// returning true while it is read ends the turn there, with no reply (`unread` > 0).
    ///
    /// When the block memory holds evicted text, passages the question names are read again
    /// right before it (see `recallPassages`).
    @discardableResult
    func reply(to text: String, document: String? = nil, maxTokens: Int, progress: ((Int, Int) -> Void)? = nil,
               shouldStop: (() -> Bool)? = nil, onText: (String) -> Bool) throws -> ReplyStats {
        let user = ChatMessage(role: .user, content: document.map { $0 + "\n\n" + text } ?? text)
        let generation = template.map { [$0.imStart] + generator.tokenizer.encode("assistant\n") } ?? []
        let firstTurn = messages.isEmpty
        let whole = userTurn(user) + generation
        let t0 = Date()
        let turnStart = generator.cache.tokensSeen
        var stats = ReplyStats(promptTokens: whole.count)
        defer { generator.cache.hidden = nil }
        lastPassages = []
        lastRecallPosition = nil
        var read: Int
        if passages == nil || generator.cache.tokensSeen + whole.count <= generator.cache.capacity {
            // Nothing is or will be evicted: the turn as one text.
            read = try feed(whole, progress: progress, shouldStop: shouldStop)
        } else {
            // The turn up to the question (the document, if any), then the passages it asks
            // about, then the question.
            let head = userTurnHead(document.map { $0 + "\n\n" } ?? "", firstTurn: firstTurn)
            let tail = generator.tokenizer.encode(text) + (template.map { [$0.imEnd] + generator.tokenizer.encode("\n") } ?? []) + generation
            read = try feed(head, progress: progress, shouldStop: shouldStop)
            if document != nil { documentEnd = generator.cache.tokensSeen }
            if read == head.count {
                var recalled = recallPassages(for: text, document: document != nil || holdsDocument)
                if document == nil, !recalled.isEmpty, let end = documentEnd, end < turnStart {
                    // A later question about the document: the earlier questions and answers
                    // are hidden while this one is read and answered, so the model sees the
                    // document's window, the passages and the question. Left visible, the
                    // 135M model answered with its previous answer's shape ("In which town did
                    // Colonel Marchetti hide the silver telescope?" → "The secret code of the
                    // green box is 56577.") in 4 of 8 misses (32K needle, seed 302).
                    generator.cache.hidden = end ..< turnStart
                }
                if document != nil, let template {
                    // The passages and the question as a user turn of their own after the
                    // document's (later questions have a turn of their own already): read on
                    // in the document's turn, the model answered from the document's last
                    // lines as often as from the passage (8K-token needle: 11/20 → 14/20),
                    // and with no passage found it went on with the document ("…hidden.
                    // 9.4.2. Monitoring a process").
                    recalled = [template.imEnd] + generator.tokenizer.encode("\n") + [template.imStart]
                        + generator.tokenizer.encode("user\n") + recalled
                }
                stats.promptTokens = head.count + recalled.count + tail.count
                read += try feed(recalled + tail, progress: nil, shouldStop: shouldStop)
            }
        }
        messages.append(user)
        stats.promptSeconds = Date().timeIntervalSince(t0)
        guard read == stats.promptTokens else {
            stats.unread = stats.promptTokens - read
            stats.reason = .interrupted
            try closeTurn()
            return stats
        }
        var replyText = ""
        let t1 = Date()
        let (out, reason) = generator.generate(maxTokens: maxTokens) { piece in
            replyText += piece
            return onText(piece)
        }
        stats.seconds = Date().timeIntervalSince(t1)
        noteMemoryFailure()
        stats.tokens = out.count
        stats.reason = reason
        if template != nil { messages.append(ChatMessage(role: .assistant, content: replyText)) }
        try closeTurn()
        return stats
    }

    /// A passage read again: why it was chosen, and the stream range it was read from.
    struct ReadAgain {
        let passage: PassageIndex.Passage
        let source: Range<Int>
    }

    /// The passages read again before the last question, in the order read (best last), and
    /// the stream position where they were read (nil: the turn evicted nothing).
    private(set) var lastPassages: [ReadAgain] = []
    private(set) var lastRecallPosition: Int?
    /// Where the last document (piped or /file) ends in the stream: later questions about it
    /// hide what came between (see `reply`).
    private(set) var documentEnd: Int?

    /// How much of a passage about a document is read again: its best sentence and the rest
    /// of its paragraph within this many tokens. The less, the better this model used it
    /// (`scroll needle`, 20 facts in 8K-token documents: 14/20 with 128 tokens ending at the
    /// fact's sentence, 16–18/20 with 32, 18–19/20 with the sentence alone; docs/recall.md).
    static let focusedPassageTokens = 32

    /// Passages of earlier text that `question` is about, as tokens to read right before it
    /// (their own token ids, each followed by a blank line), and noted as copies so that the
    /// index never finds them again.
    ///
    /// Budget. When the conversation holds a document (piped, /file, or any user turn longer
    /// than the window), questions are about it: passages found by any shared word anywhere
    /// before the question, in the window too (a fact 900 tokens back is as lost to this model
    /// as an evicted one, and one 200 tokens back was still missed when asked in other
    /// words), each cut to its best sentence (`PassageIndex.focus`), up to half the window in
    /// all. In a plain chat recent turns matter more: up to a quarter of the window, only
    /// evicted text, and only passages holding at least half of the question's word weight,
    /// so a turn that names nothing from long ago reads nothing; they are read whole (a turn
    /// is its own context).
    private func recallPassages(for question: String, document: Bool) -> [Int] {
        lastPassages = []
        guard let index = passages, let window = generator.cache.policy.window else { return [] }
        let history = generator.history, now = generator.cache.tokensSeen
        lastRecallPosition = now
        index.catchUp(history: history, end: now, tokenizer: generator.tokenizer)
        let chosen = document
            ? index.passages(for: question, budget: window / 2, before: now)
            : index.passages(for: question, budget: window / 4, minCoverage: 0.5, before: now - window)
        var ids: [Int] = []
        let gap = generator.tokenizer.encode("\n\n")
        // As they were, control tokens included: with <|im_start|>/<|im_end|> dropped, a chat
        // asking about its first message ~5K tokens back answered the passage instead of the
        // question, or went on with "user\n…" after the answer (scripts/chat-recall.sh, three
        // texts: 3/3 as they were, 1/3 as a "User: …" transcript).
        // A document question reads each passage's best sentence, the one holding most of the
        // question's word weight last, nearest the question.
        let read: [(passage: PassageIndex.Passage, range: Range<Int>)] = document
            ? chosen.enumerated().map { ($0.offset, $0.element, index.focus($0.element, question: question, history: history, end: now,
                                                                          tokenizer: generator.tokenizer, budget: Self.focusedPassageTokens)) }
                .sorted { ($0.2.weight, $0.0) < ($1.2.weight, $1.0) }.map { ($0.1, $0.2.range) }
            : chosen.map { ($0, index.tokens(of: $0, history: history, end: now, tokenizer: generator.tokenizer)) }
        for (p, r) in read {
            let start = generator.cache.tokensSeen + ids.count
            ids += history[r]
            index.noteCopy(start ..< start + r.count)
            ids += gap
            lastPassages.append(ReadAgain(passage: p, source: r))
        }
        return ids
    }

    /// Ends the open turn in the cache (a reply, or a user turn whose reading was stopped)
    /// so the next user turn follows ChatML.
    private func closeTurn() throws {
        guard let template else { return }
        let close = [template.imEnd] + generator.tokenizer.encode("\n")
        if generator.remainingCapacity >= close.count { try generator.feed(close) }
    }

    /// Reads a document into the conversation without a reply (/file, or piped input kept in
    /// a session): a user turn holding it and a one-line assistant acknowledgement, so the
    /// next question follows ChatML. Returns the tokens read and the tokens there were; when
    /// `shouldStop` ended the reading early, what was read stays, with its turn closed.
    @discardableResult
    func addDocument(_ text: String, name: String, progress: ((Int, Int) -> Void)? = nil,
                     shouldStop: (() -> Bool)? = nil) throws -> (read: Int, total: Int) {
        let user = ChatMessage(role: .user, content: "Here is \(name):\n\n\(text)")
        let turn = userTurn(user)
        let ack = ChatMessage(role: .assistant, content: "I have read \(name).")
        let ids = turn + (template.map { $0.encodeTurn(ack) } ?? [])
        let read = try feed(ids, progress: progress, shouldStop: shouldStop)
        documentEnd = generator.cache.tokensSeen
        messages.append(user)
        if read < ids.count && read != turn.count { try closeTurn() }
        if template != nil && read == ids.count { messages.append(ack) }
        return (read, ids.count)
    }

    /// Whether a user turn held a document (piped, /file, pasted): more bytes than three
    /// times the window's tokens, about a window of text.
    private var holdsDocument: Bool {
        guard let window = generator.cache.policy.window else { return false }
        return messages.contains { $0.role == .user && $0.content.utf8.count > 3 * window }
    }

    /// The tokens of a user turn up to and including `content`, whose turn stays open (the
    /// turn head of `userTurn`).
    private func userTurnHead(_ content: String, firstTurn: Bool) -> [Int] {
        guard let template else { return generator.tokenizer.encode(content) }
        var ids: [Int] = []
        if firstTurn {
            let system = systemPrompt.map { [ChatMessage(role: .system, content: $0)] } ?? []
            ids = template.encode(system, addGenerationPrompt: false)
        }
        return ids + [template.imStart] + generator.tokenizer.encode("user\n" + content)
    }

    /// Tokens before a user turn's text: where a document given to `reply` starts.
    func turnHeadTokens(firstTurn: Bool) -> Int { userTurnHead("", firstTurn: firstTurn).count }

    /// A user turn's tokens (the whole prompt with the system message on the first turn).
    private func userTurn(_ user: ChatMessage) -> [Int] {
        guard let template else { return generator.tokenizer.encode(user.content) }
        if messages.isEmpty {
            // First turn: the system message (ours or the model's default) comes first.
            let system = systemPrompt.map { [ChatMessage(role: .system, content: $0)] } ?? []
            messages = system
            return template.encode(system + [user], addGenerationPrompt: false)
        }
        return template.encodeTurn(user)
    }

    private func feed(_ ids: [Int], progress: ((Int, Int) -> Void)?, shouldStop: (() -> Bool)?) throws -> Int {
        let cache = generator.cache
        defer { noteMemoryFailure() }
        if let window = cache.policy.window, ids.count > cache.capacity {
            // No silent truncation: say once how a long input is held.
            let held = cache.memory != nil
                ? "the rest goes to block memory, from which the most relevant passages are recalled (--no-memory turns this off)"
                : "the rest is dropped (block memory is off)"
            Terminal.note("scroll: the input (\(ids.count) tokens) is longer than the window: the model attends to the first \(cache.policy.sinks) tokens and the last \(window); \(held)")
        }
        return try generator.feed(ids, progress: { progress?($0, ids.count); self.noteMemoryFailure() }, shouldStop: shouldStop)
    }

    /// A failure of the block memory's file (a missing or full temporary folder), said once
    /// when it happens; before, it showed only in /stats, and a long document read on.
    private var memoryFailureNoted = false
    private func noteMemoryFailure() {
        guard !memoryFailureNoted, let failure = generator.cache.memory?.failure else { return }
        memoryFailureNoted = true
        Terminal.note("scroll: block memory: \(failure); older text beyond --memory-budget is dropped (set TMPDIR to a writable folder)")
    }

    /// Starts over with a new system prompt (nil: the model's default).
    func setSystemPrompt(_ prompt: String?) {
        reset()
        systemPrompt = prompt
    }

    /// Saves the whole state to `path` (atomically; the previous file survives any failure).
    func save(to path: String, encoding: SessionFile.KVEncoding) throws {
        lastSave = try SessionFile.save(to: path, generator: generator,
                             conversation: SessionConversation(messages: messages, systemPrompt: systemPrompt, raw: raw,
                                                               sampler: generator.sampler, rereadCopies: passages?.copies ?? [],
                                                               documentEnd: documentEnd),
                             encoding: encoding, modelName: (generator.model.gguf.path as NSString).lastPathComponent,
                             flags: CacheOptions.flags(for: generator.cache, rope: generator.model.rope.scaling),
                             after: lastSave)
    }

    /// Where the session file stood after the last save or load: the next save to it appends.
    private var lastSave: SessionFile.Checkpoint?

    /// Replaces the state with the session at `path`; on any error the conversation is as it was.
    func load(from path: String) throws -> SessionHeader {
        let model = generator.model
        let contents = try SessionFile.load(from: path, model: model, tokenizer: generator.tokenizer,
                                            freshCache: model.makeCache(like: generator.cache))
        guard contents.conversation.raw == raw else {
            throw EngineError.invalidArgument("cannot load session \(path): it was a \(contents.conversation.raw ? "--raw" : "chat") conversation; this one is \(raw ? "--raw" : "a chat")")
        }
        generator.restore(cache: contents.cache, history: contents.history, logits: contents.logits,
                          sampler: contents.conversation.restoredSampler)
        messages = contents.conversation.messages
        systemPrompt = contents.conversation.systemPrompt
        // The index is rebuilt from the tokens when the next question needs it.
        passages?.reset()
        for r in contents.conversation.rereadCopies ?? [] { passages?.noteCopy(r) }
        documentEnd = contents.conversation.documentEnd.flatMap { (0...contents.history.count).contains($0) ? $0 : nil }
        lastSave = contents.checkpoint
        if contents.interruptedSave {
            Terminal.note("scroll: session \(Terminal.escaped((path as NSString).lastPathComponent)): its last save was cut short (the process ended while saving); resumed from the save before it")
        }
        lastPassages = []
        return contents.header
    }

    func reset() {
        memoryFailureNoted = false
        generator.reset()
        messages.removeAll()
        passages?.reset()
        lastPassages = []
        documentEnd = nil
    }
}
