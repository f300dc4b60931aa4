/// Drives the model over a growing token stream: feeds prompt tokens into the cache, then
/// samples and streams a reply until a stop token, a token limit or the caller says stop.
public final class Generator {
    public let model: Transformer
    public let tokenizer: Tokenizer
    public private(set) var cache: KVCache
    public var sampler: Sampler
    /// Every token in the cache, in order.
    public private(set) var history: [Int] = []
    /// Logits after the last fed token ([vocab]); nil before the first.
    private var logits: UnsafeBufferPointer<Float>?

    /// A generator over a dense cache of `cacheCapacity` tokens (default: the trained context).
    public convenience init(model: Transformer, tokenizer: Tokenizer, sampler: Sampler, cacheCapacity: Int? = nil) {
        self.init(model: model, tokenizer: tokenizer, sampler: sampler, cache: model.makeCache(capacity: cacheCapacity))
    }

    public init(model: Transformer, tokenizer: Tokenizer, sampler: Sampler, cache: KVCache) {
        self.model = model
        self.tokenizer = tokenizer
        self.sampler = sampler
        self.cache = cache
    }

    /// Tokens the cache can still take (unbounded with a sliding window).
    public var remainingCapacity: Int { cache.remaining }

    /// Runs `ids` through the model in batched chunks. Throws, feeding nothing, if they do
    /// not fit. `progress` is called after each chunk with the count done so far.
    ///
    /// With `shouldStop`, the tokens go in pieces of `stopGranularity` and reading ends early
    /// when it returns true between two pieces (Ctrl-C while a long document is read: the
    /// wait is at most one piece, ~2 s, not the whole document). What was read stays in the
    /// cache. Returns the number of tokens fed.
    @discardableResult
    public func feed(_ ids: [Int], progress: ((Int) -> Void)? = nil, shouldStop: (() -> Bool)? = nil) throws -> Int {
        guard ids.count <= remainingCapacity else {
            throw EngineError.invalidArgument("input of \(ids.count) tokens does not fit: the dense context has room for \(remainingCapacity) more (of \(cache.capacity))")
        }
        guard !ids.isEmpty else { return 0 }
        guard let shouldStop else {
            logits = model.prefill(ids, cache: cache, progress: progress)
            history += ids
            return ids.count
        }
        var done = 0
        while done < ids.count, !shouldStop() {
            let piece = Array(ids[done..<min(ids.count, done + Self.stopGranularity)])
            let offset = done
            logits = model.prefill(piece, cache: cache) { progress?(offset + $0) }
            history += piece
            done += piece.count
        }
        return done
    }

    /// Tokens fed between two `shouldStop` checks: two prefill chunks.
    public static let stopGranularity = 2 * Transformer.prefillBatch

    /// Why a reply ended.
    public enum StopReason: Equatable { case stopToken, maxTokens, contextFull, interrupted }

    /// Samples up to `maxTokens` tokens. Each sampled token except a stop token is fed back
    /// into the cache, and its completed text handed to `onText`; returning false from
    /// `onText` stops the reply (what was generated stays in the cache). `stops`: the tokens
    /// that end a reply (default: the vocabulary's; a chat template adds its end of turn).
    @discardableResult
    public func generate(maxTokens: Int, stops: Set<Int>? = nil, onText: (String) -> Bool = { _ in true }) -> (ids: [Int], reason: StopReason) {
        let stops = stops ?? tokenizer.stopTokens
        var detok = StreamingDetokenizer(tokenizer: tokenizer)
        var out: [Int] = []
        guard let first = logits else { return ([], .maxTokens) }
        var current = first
        while true {
            if out.count >= maxTokens { _ = onText(detok.flush()); return (out, .maxTokens) }
            let id = sampler.sample(current, recent: out)
            if stops.contains(id) { _ = onText(detok.flush()); return (out, .stopToken) }
            if remainingCapacity == 0 { _ = onText(detok.flush()); return (out, .contextFull) }
            current = model.forward(token: id, cache: cache)
            logits = current
            history.append(id)
            out.append(id)
            if !onText(detok.push(id)) { _ = onText(detok.flush()); return (out, .interrupted) }
        }
    }

    /// The logits after the last token fed or generated ([vocab]); nil before the first.
    public var lastLogits: UnsafeBufferPointer<Float>? { logits }

    /// Continues from a loaded session: its cache (made by this model), the tokens it holds,
    /// the logits after the last one and the sampler as it was.
    public func restore(cache: KVCache, history: [Int], logits saved: [Float], sampler: Sampler) {
        precondition(saved.isEmpty || saved.count == model.config.vocabSize)
        self.cache = cache
        self.history = history
        self.sampler = sampler
        if saved.isEmpty {
            logits = nil
        } else {
            model.logitsBuffer.update(from: saved, count: saved.count)
            logits = UnsafeBufferPointer(start: model.logitsBuffer, count: saved.count)
        }
    }

    /// The generator at one point (Rewind.swift): the cache and memory, the tokens, the
    /// logits after the last one, the sampler's RNG. The sampler's settings are the user's
    /// (/set), not the stream's: a rewind leaves them as they are.
    public struct Mark {
        public let cache: KVCache.Mark
        let history: Int
        let logits: [Float]?
        let rng: RandomGenerator
    }

    /// Marks the state as it is now, for `rewind(to:)`.
    public func mark() -> Mark {
        Mark(cache: cache.mark(), history: history.count, logits: logits.map(Array.init), rng: sampler.rng)
    }

    /// Puts everything back as it was at `mark` (the cache must still hold it:
    /// `cache.canRewind(to:)`). With `keepingRNG` the RNG goes on from where it is, so that
    /// a reply sampled again (/retry) is a new draw rather than the same one.
    public func rewind(to mark: Mark, keepingRNG: Bool = false) {
        cache.rewind(to: mark.cache)
        history.removeSubrange(mark.history...)
        var sampler = self.sampler
        if !keepingRNG { sampler.rng = mark.rng }
        restore(cache: cache, history: history, logits: mark.logits ?? [], sampler: sampler)
    }

    /// Empties the cache.
    public func reset() {
        cache.reset()
        history.removeAll()
        logits = nil
    }
}
