import Engine
import Foundation

/// `scroll bench --session-text FILE`: what a session costs and saves. Reads
/// --session-tokens tokens of the text into the cache, saves the session int8 and lossless,
/// loads each back, and compares: file size against llama.cpp's f16 state for the same
/// tokens (2 · layers · kv_dim · 2 bytes per token plus its logits), load time against
/// re-reading the text, and perplexity over the next --session-eval tokens from the original
/// and from each resumed cache.
extension Bench {
    func runSessionBench(_ textPath: String) throws {
        try reportingErrors {
            let (model, tokenizer) = try modelOptions.load(cacheCapacity: cacheOptions.requestedCapacity())
            guard let data = FileManager.default.contents(atPath: textPath) else { throw EngineError.fileNotFound(textPath) }
            let all = tokenizer.encode(String(decoding: data, as: UTF8.self))
            let n = sessionTokens, m = sessionEval
            guard all.count >= n + m else { throw EngineError.invalidArgument("\(textPath) has \(all.count) tokens, need \(n + m)") }
            let generator = Generator(model: model, tokenizer: tokenizer, sampler: Sampler(settings: SamplerSettings()),
                                      cache: try cacheOptions.makeCache(for: model))
            print(CacheOptions.describe(generator.cache))
            let t0 = now()
            try generator.feed(Array(all[..<n]))
            let rereadSeconds = now() - t0
            let directory = NSTemporaryDirectory() + "scroll-session-bench-\(getpid())"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(atPath: directory) }
            let conversation = SessionConversation(messages: [], systemPrompt: nil, raw: true, sampler: generator.sampler)
            let c = model.config
            let llamaBytes = Double(n * 2 * c.layerCount * c.kvDim * 2 + c.vocabSize * 4)
            let future = Array(all[n..<(n + m)])
            var rows: [String] = []
            var saved: [(SessionFile.KVEncoding, String, Double, Double)] = []
            func bytes(_ path: String) -> Double { Double((try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int) ?? 0) }
            for encoding in SessionFile.KVEncoding.allCases {
                let path = directory + "/\(encoding.rawValue)"
                let s0 = now()
                try SessionFile.save(to: path, generator: generator, conversation: conversation, encoding: encoding, modelName: "bench")
                saved.append((encoding, path, now() - s0, bytes(path)))
            }
            // The original state goes on to the evaluation tokens only after both saves.
            let baseline = perplexity(model, generator.cache, Array(generator.lastLogits!), future)
            for (encoding, path, saveSeconds, size) in saved {
                let l0 = now()
                let contents = try SessionFile.load(from: path, model: model, tokenizer: tokenizer, freshCache: try cacheOptions.makeCache(for: model))
                let loadSeconds = now() - l0
                let ppl = perplexity(model, contents.cache, contents.logits, future)
                rows.append(String(format: "| %@ | %.1f | %.1f%% | %.2f | %.2f | %.0f× faster | %.4f | %+.2f%% |", encoding.rawValue, size / 1_048_576,
                                   100 * size / llamaBytes, saveSeconds, loadSeconds, rereadSeconds / loadSeconds, ppl, 100 * (ppl / baseline - 1)))
            }
            // A follow-up question and its answer, then the save that appends them, on a copy of
            // each saved file (after the perplexities: generators share the model's logits buffer).
            var followUps: [String] = []
            for (encoding, path, _, size) in saved {
                let copy = directory + "/\(encoding.rawValue)-followup"
                try FileManager.default.copyItem(atPath: path, toPath: copy)
                let c = try SessionFile.load(from: copy, model: model, tokenizer: tokenizer, freshCache: try cacheOptions.makeCache(for: model))
                let g = Generator(model: model, tokenizer: tokenizer, sampler: Sampler(settings: SamplerSettings()), cache: c.cache)
                g.restore(cache: c.cache, history: c.history, logits: c.logits, sampler: c.conversation.restoredSampler)
                try g.feed(tokenizer.encode("\n\nWhat does the text above say about its subject? Answer in one sentence."))
                g.generate(maxTokens: 40)
                let s0 = now()
                try SessionFile.save(to: copy, generator: g, conversation: conversation, encoding: encoding, modelName: "bench", after: c.checkpoint)
                let seconds = now() - s0, added = bytes(copy) - size
                followUps.append(String(format: "| %@ | %.2f | %.2f | %.2f%% |", encoding.rawValue, seconds, added / 1_048_576, 100 * added / size))
            }
            print("read \(n) tokens in \(String(format: "%.1f", rereadSeconds)) s; llama.cpp's f16 state for them: \(String(format: "%.1f", llamaBytes / 1_048_576)) MiB")
            print("| session KV | file MiB | of llama.cpp f16 | save s | load s | load vs re-read | ppl next \(m) | ppl change |")
            print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
            print(String(format: "| (original) | | | | | | %.4f | |", baseline))
            rows.forEach { print($0) }
            print("\nA follow-up (a 20-token question and a 40-token answer) saved after resuming:")
            print("| session KV | save s | bytes appended MiB | of the session |")
            print("| --- | ---: | ---: | ---: |")
            followUps.forEach { print($0) }
        }
    }

    /// Perplexity of `tokens` read one at a time after a state whose next-token logits are `first`.
    private func perplexity(_ model: Transformer, _ cache: KVCache, _ first: [Float], _ tokens: [Int]) -> Double {
        var nll = 0.0
        var logits = first
        for (i, t) in tokens.enumerated() {
            let mx = logits.max()!
            var z = 0.0
            for l in logits { z += exp(Double(l - mx)) }
            nll += log(z) - Double(logits[t] - mx)
            if i + 1 < tokens.count { logits = Array(model.forward(token: t, cache: cache)) }
        }
        return exp(nll / Double(tokens.count))
    }

    private func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }
}
