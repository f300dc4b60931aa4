import Foundation

/// What a model and its cache will take, added up before any of it is allocated, so that a
/// request the machine cannot hold is refused in one line naming the part and the flag.
///
/// Why: `--window 1000000` grew to 2.6 GB and ended in "Fatal error: out of memory for the KV
/// cache", `--dense --rope-scale 1024` asked for a 387 GB cache and trapped, and a model file
/// claiming a context of 10^8 tokens ran until the kernel's OOM killer ended it. Sizes are
/// added in Double, so no claim, however large, can overflow the sum.
public struct MemoryPlan {
    public struct Part {
        public let what: String
        public let bytes: Double
        /// What to change to need less, e.g. "a smaller --window".
        public let remedy: String
    }
    public private(set) var parts: [Part] = []

    public init() {}

    public mutating func add(_ what: String, bytes: Double, remedy: String) {
        parts.append(Part(what: what, bytes: bytes, remedy: remedy))
    }

    public var total: Double { parts.reduce(0) { $0 + $1.bytes } }

    /// The machine's physical memory in bytes.
    public static var physicalMemory: Double {
        Double(sysconf(Int32(_SC_PHYS_PAGES))) * Double(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Throws when the plan exceeds `limit` (default: 90% of physical memory, leaving room for
    /// the system and the page cache), naming the largest part.
    public func check(limit: Double = 0.9 * MemoryPlan.physicalMemory) throws {
        guard total > limit, let largest = parts.max(by: { $0.bytes < $1.bytes }) else { return }
        throw EngineError.invalidArgument(
            "this needs about \(Self.size(total)) of memory and the machine has \(Self.size(MemoryPlan.physicalMemory)): "
            + "\(largest.what) alone takes \(Self.size(largest.bytes)); \(largest.remedy)")
    }

    /// "1.8 TB", "740 MB": decimal units, as `free -h` users read them.
    public static func size(_ bytes: Double) -> String {
        let units = ["bytes", "KB", "MB", "GB", "TB", "PB"]
        var value = bytes, unit = 0
        while value >= 1000 && unit < units.count - 1 { value /= 1000; unit += 1 }
        return unit == 0 ? "\(Int(value)) bytes" : String(format: value < 10 ? "%.1f %@" : "%.0f %@", value, units[unit])
    }
}

extension Transformer {
    /// The model's own buffers for `positions` RoPE positions and `threads` workers, and its
    /// weights file (mapped; repacked matrices are about as large again at most).
    public static func plan(config c: ModelConfig, positions: Int, threads: Int, fileBytes: Int, into plan: inout MemoryPlan) {
        let p = Double(positions), f = 4.0
        plan.add("the weights", bytes: Double(fileBytes), remedy: "use a smaller model")
        plan.add("the attention scores for \(positions) positions", bytes: Double(threads) * (Double(c.groupSize) * p + Double(c.headCount * (c.headDim + 2))) * f,
                 remedy: "use a smaller window or RoPE scale")
        plan.add("the RoPE table", bytes: Double(min(positions, RopeTable.maxTabulated) * c.headDim) * f, remedy: "use a smaller RoPE scale")
        let d = Double(c.embeddingLength), batch = Double(prefillBatch)
        plan.add("the prompt buffers", bytes: f * (batch * (3 * d + 4 * Double(c.qDim) + 2 * Double(c.kvDim) + 2 * Double(c.feedForwardLength))
                                                   + Double(max(c.qDim, c.feedForwardLength)) * d),
                 remedy: "use a smaller model")
    }
}

extension Transformer {
    /// This model's own part of a plan (the plan a cache for it is checked with).
    public func plan(into plan: inout MemoryPlan) {
        Self.plan(config: config, positions: maxPositions, threads: pool.threads, fileBytes: gguf.fileBytes, into: &plan)
    }
}

extension KVCache {
    /// The keys and values a cache with `policy` would hold, and the block memory's RAM.
    public static func plan(config c: ModelConfig, policy: CachePolicy, precision: KVPrecision, memory: MemorySettings?,
                            into plan: inout MemoryPlan) {
        let perToken = Double(2 * c.layerCount * c.kvHeadCount * precision.rowBytes(headDim: c.headDim))
        plan.add("the KV cache of \(policy.capacity) tokens", bytes: Double(policy.capacity) * perToken,
                 remedy: policy.window == nil ? "use a sliding window instead of --dense, or a smaller RoPE scale" : "use a smaller --window, or --kv int8")
        if let m = memory, policy.window != nil {
            plan.add("the block memory's RAM budget", bytes: Double(m.ramBudget), remedy: "use a smaller --memory-budget")
            plan.add("the recalled blocks", bytes: Double(m.topBlocks * m.blockSize) * perToken * 2,
                     remedy: "use fewer --top-blocks or a smaller --block-size")
        }
    }
}
