import Foundation

/// What a conversation tells its caller while it works: the caller renders, the conversation
/// never prints (the REPL, pipe mode, `scroll needle` and the tests drive the same path).
public enum ConversationEvent: Equatable {
    /// Tokens of a long turn read so far, of all there are to read.
    case reading(Int, of: Int)
    /// A line for the user: how a long input is held, a failing memory file, a save cut short.
    case notice(String)
    /// The next piece of the reply.
    case text(String)
}

/// A chat over one generator: user turns go in through the chat template (or as plain text
/// with --raw), replies stream out, and every turn stays in the cache for the next. Each
/// exchange can be undone or answered again exactly (Conversation+Undo.swift); passages of
/// evicted text a question names are read again before it (Conversation+Recall.swift).
public final class Conversation {
    public let generator: Generator
    public let template: ChatTemplate?
    public internal(set) var systemPrompt: String?
    public internal(set) var messages: [ChatMessage] = []
    public let raw: Bool
    /// Evicted text by its words, for the passages a question is about (nil without a block memory).
    public let passages: PassageIndex?

    public init(model: Transformer, tokenizer: Tokenizer, cache: KVCache,
                sampling: SamplerSettings, systemPrompt: String?, raw: Bool, templateSource: String?,
                templateFormat: ChatTemplate.Format? = nil, rereadPassages: Bool = true) throws {
        generator = Generator(model: model, tokenizer: tokenizer, sampler: Sampler(settings: sampling), cache: cache)
        template = raw ? nil : try ChatTemplate(tokenizer: tokenizer, templateSource: templateSource, format: templateFormat)
        self.systemPrompt = systemPrompt
        self.raw = raw
        passages = rereadPassages ? cache.memory.map { PassageIndex(unit: $0.settings.blockSize, origin: cache.policy.sinks) } : nil
        cache.memory?.prepareFile()
    }

    /// What a reply cost.
    public struct ReplyStats {
        public var reason = Generator.StopReason.maxTokens
        public var promptTokens = 0
        public var promptSeconds = 0.0
        public var tokens = 0
        public var seconds = 0.0
        /// Prompt tokens left unread when reading was stopped (Ctrl-C); 0 when all were read.
        public var unread = 0
    }

    /// Feeds the user's turn and streams the reply as `.text` events. A `document` (piped
    /// stdin) comes first in the turn, the question after it. `shouldStop` returning true
    /// while the turn is read ends it there, with no reply (`unread` > 0); while the reply is
    /// sampled, it ends the reply (what was generated stays).
    ///
    /// When the block memory holds evicted text, passages the question names are read again
    /// right before it (see `recallPassages`).
    @discardableResult
    public func reply(to text: String, document: String? = nil, maxTokens: Int, shouldStop: @escaping () -> Bool = { false },
                      events: (ConversationEvent) -> Void) throws -> ReplyStats {
        beginExchange(.reply(text: text, document: document))
        defer { endExchange() }
        noteMemoryFailure(events)
        let user = ChatMessage(role: .user, content: document.map { $0 + "\n\n" + text } ?? text)
        let generation = template?.head(.assistant) ?? []
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
            read = try feed(whole, shouldStop: shouldStop, events: events)
        } else {
            // The turn up to the question (the document, if any), then the passages it asks
            // about, then the question.
            let head = userTurnHead(document.map { $0 + "\n\n" } ?? "", firstTurn: firstTurn)
            let tail = generator.tokenizer.encode(text) + (template?.tail(.user) ?? []) + generation
            read = try feed(head, shouldStop: shouldStop, events: events)
            if document != nil { documentEnd = generator.cache.tokensSeen }
            if read == head.count {
                // A later question about the document: the earlier questions and answers are
                // hidden while this one is read and answered (from attention, in the window and
                // in the memory, and from the passages read again), so the model sees the
                // document, the passages and the question. Left visible, the 135M model
                // answered with its previous answer's shape ("In which town did Colonel
                // Marchetti hide the silver telescope?" → "The secret code of the green box is
                // 56577.") in 4 of 8 misses (32K needle, seed 302).
                let earlier = documentEnd.flatMap { document == nil && $0 < turnStart ? $0 ..< turnStart : nil }
                var recalled = recallPassages(for: text, document: document != nil || holdsDocument, excluding: earlier)
                if let earlier, !recalled.isEmpty { generator.cache.hidden = earlier }
                if document != nil, let template {
                    // The passages and the question as a user turn of their own after the
                    // document's (later questions have a turn of their own already): read on
                    // in the document's turn, the model answered from the document's last
                    // lines as often as from the passage (8K-token needle: 11/20 → 14/20),
                    // and with no passage found it went on with the document ("…hidden.
                    // 9.4.2. Monitoring a process").
                    recalled = template.tail(.user) + template.head(.user) + recalled
                }
                stats.promptTokens = head.count + recalled.count + tail.count
                read += try feed(recalled + tail, shouldStop: shouldStop, events: { _ in })
            }
        }
        messages.append(user)
        stats.promptSeconds = Date().timeIntervalSince(t0)
        guard read == stats.promptTokens else {
            stats.unread = stats.promptTokens - read
            stats.reason = .interrupted
            try closeTurn(.user)
            return stats
        }
        var replyText = ""
        let t1 = Date()
        let (out, reason) = generator.generate(maxTokens: maxTokens, stops: generator.tokenizer.stopTokens.union(template?.stopTokens ?? [])) { piece in
            replyText += piece
            if !piece.isEmpty { events(.text(piece)) }
            return !shouldStop()
        }
        stats.seconds = Date().timeIntervalSince(t1)
        noteMemoryFailure(events)
        stats.tokens = out.count
        stats.reason = reason
        if template != nil { messages.append(ChatMessage(role: .assistant, content: replyText)) }
        try closeTurn(.assistant)
        return stats
    }

    /// The passages read again before the last question, in the order read (best last), and
    /// the stream position where they were read (nil: the turn evicted nothing).
    public internal(set) var lastPassages: [ReadAgain] = []
    public internal(set) var lastRecallPosition: Int?
    /// The exchanges that can be undone, oldest first (Conversation+Undo.swift).
    var exchanges: [Exchange] = []
    /// Whether exchanges are marked for /undo and /retry. A one-shot answer turns it off:
    /// the mark of a long document keeps a window of rows it will never use (47 MB).
    public var keepsUndo = true
    /// Where the session file stood after the last save or load: the next save to it appends.
    var lastSave: SessionFile.Checkpoint?

    /// Where the last document (piped or /file) ends in the stream: later questions about it
    /// hide what came between (see `reply`).
    public internal(set) var documentEnd: Int?

    /// Ends the open turn in the cache (a reply, or a user turn whose reading was stopped)
    /// so the next user turn follows the template.
    private func closeTurn(_ role: ChatMessage.Role) throws {
        guard let close = template?.tail(role) else { return }
        if generator.remainingCapacity >= close.count { try generator.feed(close) }
    }

    /// Reads a document into the conversation without a reply (/file, or piped input kept in
    /// a session): a user turn holding it and a one-line assistant acknowledgement, so the
    /// next question follows ChatML. Returns the tokens read and the tokens there were; when
    /// `shouldStop` ended the reading early, what was read stays, with its turn closed.
    @discardableResult
    public func addDocument(_ text: String, name: String, shouldStop: @escaping () -> Bool = { false },
                            events: (ConversationEvent) -> Void) throws -> (read: Int, total: Int) {
        beginExchange(.document(name: name))
        defer { endExchange() }
        noteMemoryFailure(events)
        let user = ChatMessage(role: .user, content: "Here is \(name):\n\n\(text)")
        let turn = userTurn(user)
        let ack = ChatMessage(role: .assistant, content: "I have read \(name).")
        let ids = turn + (template.map { $0.encodeTurn(ack) } ?? [])
        let read = try feed(ids, shouldStop: shouldStop, events: events)
        documentEnd = generator.cache.tokensSeen
        messages.append(user)
        if read < ids.count && read != turn.count { try closeTurn(read < turn.count ? .user : .assistant) }
        if template != nil && read == ids.count { messages.append(ack) }
        return (read, ids.count)
    }

    /// Whether a user turn held a document (piped, /file, pasted): more bytes than three
    /// times the window's tokens, about a window of text.
    var holdsDocument: Bool {
        guard let window = generator.cache.policy.window else { return false }
        return messages.contains { $0.role == .user && $0.content.utf8.count > 3 * window }
    }

    /// The tokens of a user turn up to and including `content`, whose turn stays open (the
    /// turn head of `userTurn`).
    private func userTurnHead(_ content: String, firstTurn: Bool) -> [Int] {
        // Raw text starts with the BOS where the model adds one (Gemma: without it the
        // continuation of "The capital of France is" was " France. The The The …").
        guard let template else { return (firstTurn ? generator.tokenizer.leadingBOS : []) + generator.tokenizer.encode(content) }
        guard firstTurn else { return template.head(.user) + generator.tokenizer.encode(content) }
        let system = systemPrompt.map { [ChatMessage(role: .system, content: $0)] } ?? []
        guard template.hasSystemRole else {
            // The system text opens the first user turn, as the template's encode puts it.
            return template.prefix + template.head(.user) + generator.tokenizer.encode((systemPrompt.map { $0 + "\n\n" } ?? "") + content)
        }
        return template.encode(system, addGenerationPrompt: false) + template.head(.user) + generator.tokenizer.encode(content)
    }

    /// Tokens before a user turn's text: where a document given to `reply` starts.
    public func turnHeadTokens(firstTurn: Bool) -> Int { userTurnHead("", firstTurn: firstTurn).count }

    /// A user turn's tokens (the whole prompt with the system message on the first turn).
    private func userTurn(_ user: ChatMessage) -> [Int] {
        guard let template else { return (messages.isEmpty ? generator.tokenizer.leadingBOS : []) + generator.tokenizer.encode(user.content) }
        if messages.isEmpty {
            // First turn: the system message (ours or the model's default) comes first.
            let system = systemPrompt.map { [ChatMessage(role: .system, content: $0)] } ?? []
            messages = system
            return template.encode(system + [user], addGenerationPrompt: false)
        }
        return template.encodeTurn(user)
    }

    private func feed(_ ids: [Int], shouldStop: @escaping () -> Bool, events: (ConversationEvent) -> Void) throws -> Int {
        let cache = generator.cache
        defer { noteMemoryFailure(events) }
        if let window = cache.policy.window, ids.count > cache.capacity {
            // No silent truncation: say once how a long input is held.
            let held = cache.memory != nil
                ? "the rest goes to block memory, from which the most relevant passages are recalled (--no-memory turns this off)"
                : "the rest is dropped (block memory is off)"
            events(.notice("the input (\(ids.count) tokens) is longer than the window: the model attends to the first \(cache.policy.sinks) tokens and the last \(window); \(held)"))
        }
        return try withoutActuallyEscaping(events) { events in
            try generator.feed(ids, progress: { events(.reading($0, of: ids.count)); self.noteMemoryFailure(events) }, shouldStop: shouldStop)
        }
    }

    /// A failure of the block memory's file (a missing or full temporary folder), said once
    /// when it happens; before, it showed only in /stats, and a long document read on.
    private var memoryFailureNoted = false
    private func noteMemoryFailure(_ events: (ConversationEvent) -> Void) {
        guard !memoryFailureNoted, let failure = generator.cache.memory?.failure else { return }
        memoryFailureNoted = true
        events(.notice("block memory: \(failure); older text beyond --memory-budget is dropped (set TMPDIR to a writable folder)"))
    }

    /// Starts over with a new system prompt (nil: the model's default).
    public func setSystemPrompt(_ prompt: String?) {
        reset()
        systemPrompt = prompt
    }

    /// Starts over: an empty conversation and cache.
    public func reset() {
        memoryFailureNoted = false
        generator.reset()
        messages.removeAll()
        passages?.reset()
        lastPassages = []
        documentEnd = nil
        exchanges.removeAll()
    }
}
