@testable import Engine
import Foundation
import XCTest

/// The conversation as the REPL drives it, without a process: /undo and /retry rewind the
/// cache, the block memory, the tokens, the logits and the RNG exactly (Conversation+Undo.swift).
final class ConversationTests: XCTestCase {
    var model: Transformer { TestSupport.shared.model }
    var tokenizer: Tokenizer { TestSupport.shared.tokenizer }

    /// A 64-token window with the block memory: an exchange of a few hundred tokens wraps the
    /// ring several times and finishes memory blocks.
    func makeConversation(precision: KVPrecision = .f32, temperature: Float = 0.8) throws -> Conversation {
        var m = MemorySettings()
        m.blockSize = 16
        m.topBlocks = 2
        var s = SamplerSettings()
        s.temperature = temperature
        s.seed = 7
        let cache = model.makeCache(policy: CachePolicy(sinks: 4, window: 64), precision: precision, memory: m)
        return try Conversation(model: model, tokenizer: tokenizer, cache: cache, sampling: s, systemPrompt: "Be brief.",
                                raw: false, templateSource: model.gguf.metadata["tokenizer.chat_template"]?.string)
    }

    static let longMessage = """
        The harbour master of Port Ellen kept three ledgers. The first listed every ship that \
        entered the bay, with its flag and its cargo; the second, the tides and the weather at \
        dawn and dusk; the third, which nobody else was allowed to read, held the names of the \
        sailors who had asked him for work. In the winter of 1891 a storm closed the harbour for \
        eleven days, and he filled the third ledger to its last page. Which ledger was secret, \
        and why do you think he kept it?
        """

    /// Everything an exchange can change, as bytes: the stream, the logits and the RNG; every
    /// cache row a token holds (sinks and window, by position); the memory's finished blocks,
    /// representatives, block being filled, scorer and ranking, and the rows it recalled; the
    /// conversation's messages and passage index. Slots no token holds are not state.
    func state(_ c: Conversation) throws -> State {
        let g = c.generator, cache = g.cache
        var state = State()
        func add<T>(_ part: String, _ values: [T]) { values.withUnsafeBytes { state.parts[part, default: []] += $0 } }
        func add(_ part: String, _ p: UnsafeRawPointer, _ n: Int) { state.parts[part, default: []] += UnsafeRawBufferPointer(start: p, count: n) }
        add("stream", [cache.tokensSeen] + g.history)
        add("logits", g.lastLogits.map(Array.init) ?? [])
        add("rng", [g.sampler.rng.state])
        let n = cache.tokensSeen, s = cache.policy.sinks, w = cache.policy.window!
        for p in Array(0..<min(s, n)) + Array(max(s, n - w)..<max(s, n)) {
            let slot = cache.slot(ofPosition: p)
            add("cache rows", [cache.slotPositions[slot]])
            for l in 0..<cache.layerCount { cache.forEachPiece(layer: l, slot: slot) { add("cache rows", $0, $1) } }
        }
        let m = cache.memory!
        add("memory blocks", m.blockStarts + m.pendingCount + [m.blocks])
        let blob = UnsafeMutableRawPointer.allocate(byteCount: m.store.blobBytes, alignment: 64)
        defer { blob.deallocate() }
        for i in 0..<m.blocks * m.layerCount { add("memory blocks", try XCTUnwrap(m.store.read(i, into: blob)), m.store.blobBytes) }
        let b = m.settings.blockSize, hd = m.headDim
        for l in 0..<m.layerCount {
            add("representatives", m.representatives[l])
            for h in 0..<m.kvHeadCount {
                add("block being filled", m.pendingKeys[l] + h * b * hd, m.pendingCount[l] * hd * 4)
                add("block being filled", m.pendingValues[l] + h * b * hd, m.pendingCount[l] * hd * 4)
                add("scorer", m.scorer.scores[l] + h * b, m.pendingCount[l] * 4)
            }
            add("block being filled", m.pendingPositions[l], m.pendingCount[l] * 8)
            add("scorer", m.scorer.ring[l], m.scorer.ringSize * m.kvHeadCount * hd * 4)
            let recalledRows = m.recalled[l].reduce(0) { $0 + $1.count } * b
            add("recalled rows", m.recallKeys[l], min(recalledRows, m.kvHeadCount * m.settings.topBlocks * b) * hd)
        }
        let json = JSONEncoder()
        json.outputFormatting = .sortedKeys
        state.parts["ranking"] = Array(try json.encode(RankingState(m)))
        state.parts["messages"] = Array(try json.encode(c.messages))
        add("conversation", [c.documentEnd ?? -1, c.passages?.units ?? -1] + (c.passages?.copies.flatMap { [$0.lowerBound, $0.upperBound] } ?? []))
        return state
    }

    /// A conversation's state by part; printed as the parts that differ.
    struct State: Equatable, CustomStringConvertible {
        var parts: [String: [UInt8]] = [:]
        var description: String { parts.keys.sorted().map { "\($0): \(parts[$0]!.count) bytes, digest \(parts[$0]!.hashValue)" }.joined(separator: "; ") }
    }

    func assertSame(_ a: State, _ b: State, _ message: String, file: StaticString = #filePath, line: UInt = #line) {
        let differing = Set(a.parts.keys).union(b.parts.keys).sorted().filter { a.parts[$0] != b.parts[$0] }
        XCTAssertTrue(differing.isEmpty, "\(message): \(differing.joined(separator: ", ")) differ", file: file, line: line)
    }

    /// /undo after exchanges that wrapped the window and filled memory blocks: the state is
    /// the one before, bit for bit, for f32 and int8 rows; and undoing the first exchange
    /// leaves the empty conversation.
    func testUndoRestoresTheStateBitForBit() throws {
        for precision in KVPrecision.allCases {
            let c = try makeConversation(precision: precision)
            let empty = try state(c)
            try c.reply(to: "Name a colour.", maxTokens: 12) { _ in }
            let before = try state(c), blocksBefore = c.generator.cache.memory!.blocks
            try c.reply(to: Self.longMessage, maxTokens: 40) { _ in }
            let memory = c.generator.cache.memory!
            XCTAssertGreaterThan(memory.blocks, blocksBefore + 4, "the exchange pushes window rows into the memory")
            XCTAssertNotEqual(try state(c), before)
            XCTAssertEqual(c.undo(), .reply(text: Self.longMessage, document: nil))
            assertSame(try state(c), before, "\(precision): one exchange undone")
            XCTAssertEqual(c.undo(), .reply(text: "Name a colour.", document: nil))
            assertSame(try state(c), empty, "\(precision): back to the start")
            XCTAssertNil(c.undo())
        }
    }

    /// After /undo the conversation goes on as one that never had the exchange: the same
    /// reply, token for token, to the next message.
    func testUndoneConversationGoesOnAsIfTheExchangeNeverHappened() throws {
        let plain = try makeConversation(), undone = try makeConversation()
        for c in [plain, undone] { try c.reply(to: Self.longMessage, maxTokens: 30) { _ in } }
        try undone.reply(to: "And the second ledger? Tell me about the tides in a long answer.", maxTokens: 60) { _ in }
        undone.undo()
        var replies: [String] = []
        for c in [plain, undone] {
            var text = ""
            try c.reply(to: "What did he fill in the winter of 1891?", maxTokens: 30) { if case .text(let t) = $0 { text += t } }
            replies.append(text)
        }
        XCTAssertFalse(replies[0].isEmpty)
        XCTAssertEqual(replies[0], replies[1])
        assertSame(try state(plain), try state(undone), "undone and plain")
    }

    /// /retry: the state before the new reply is the state before the old one, but for the
    /// RNG, which goes on, so the new reply is a new draw; at temp 0 it is the same reply.
    func testRetryAnswersAgainFromTheSameState() throws {
        for temperature: Float in [0.8, 0] {
            let c = try makeConversation(temperature: temperature)
            try c.reply(to: "Name a colour.", maxTokens: 12) { _ in }
            let before = c.generator.history
            var first = "", second = ""
            try c.reply(to: Self.longMessage, maxTokens: 40) { if case .text(let t) = $0 { first += t } }
            let stats = try c.retry(maxTokens: 40) { if case .text(let t) = $0 { second += t } }
            XCTAssertNotNil(stats)
            XCTAssertEqual(Array(c.generator.history.prefix(before.count)), before)
            XCTAssertEqual(c.messages.count, 5, "system, two questions, two replies")
            XCTAssertEqual(c.messages[3].content, Self.longMessage)
            XCTAssertEqual(c.messages[4].content, second)
            if temperature > 0 { XCTAssertNotEqual(first, second) } else { XCTAssertEqual(first, second) }
        }
    }

    /// A document read in (/file) is an exchange too: undone whole; a retry has nothing to answer.
    func testDocumentExchangeUndoes() throws {
        let c = try makeConversation()
        try c.reply(to: "Hello.", maxTokens: 8) { _ in }
        let before = try state(c)
        let read = try c.addDocument(String(repeating: Self.longMessage + "\n", count: 3), name: "ledgers.txt") { _ in }
        XCTAssertEqual(read.read, read.total)
        XCTAssertNotNil(c.documentEnd)
        XCTAssertNil(try c.retry(maxTokens: 8) { _ in })
        XCTAssertEqual(c.undo(), .document(name: "ledgers.txt"))
        assertSame(try state(c), before, "document undone")
    }

    /// The cache's marks: rows are kept per mark; a forgotten mark can no longer be rewound to,
    /// a newer one still can, exactly.
    func testForgottenMarksAndNewerOnes() throws {
        let g = Generator(model: model, tokenizer: tokenizer, sampler: Sampler(settings: SamplerSettings()),
                          cache: model.makeCache(policy: CachePolicy(sinks: 4, window: 32), memory: MemorySettings()))
        try g.feed(tokenizer.encode(Self.longMessage))
        let a = g.mark()
        try g.feed(tokenizer.encode(" The ledgers were bound in green leather."))
        let history = g.history, logits = Array(g.lastLogits!)
        let b = g.mark()
        try g.feed(tokenizer.encode(" He never lent them to anyone, not even to the mayor of Port Ellen."))
        XCTAssertGreaterThan(b.cache.bytes, a.cache.bytes / 2, "the rows pushed out since b are kept")
        g.cache.forget(a.cache)
        XCTAssertFalse(g.cache.canRewind(to: a.cache))
        XCTAssertTrue(g.cache.canRewind(to: b.cache))
        g.rewind(to: b)
        XCTAssertEqual(g.history, history)
        XCTAssertEqual(Array(g.lastLogits!), logits)
        XCTAssertFalse(g.cache.canRewind(to: b.cache), "a mark is used up by its rewind")
    }
}
