/// A GGUF model's tokenizer: byte-level BPE (`tokenizer.ggml.model = gpt2`: SmolLM2, Qwen,
/// Llama 3) or SentencePiece (`llama`: Gemma, Llama 2, Mistral), built from
/// `tokenizer.ggml.tokens` and the merges or scores, and encoding as llama.cpp does.
///
/// `encode` treats its text as plain text: `<|im_start|>` typed by a user stays text. Special
/// tokens enter a prompt only through the chat template, by id. User-defined tokens (Gemma's
/// newlines and whitespace runs) are cut out first, as llama.cpp does.
public final class Tokenizer {
    public let tokens: [String]
    public let tokenTypes: [Int]
    public let bos: Int?
    public let eos: Int?
    /// The BOS a text starts with when the model adds one (`tokenizer.ggml.add_bos_token`), as
    /// llama.cpp puts it before a prompt or a perplexity chunk; empty when it adds none.
    public internal(set) var leadingBOS: [Int] = []
    /// Token ids that end a reply: eos plus ChatML's `<|im_end|>` and `<|endoftext|>` when present.
    public let stopTokens: Set<Int>
    var digestMemo: String?           // SessionFingerprint: the vocabulary digest

    private enum Algorithm {
        case bytePairs(BytePairEncoding)
        case sentencePiece(SentencePiece)
    }
    private let algorithm: Algorithm
    private let userDefined: UserDefinedTokens
    private let idOf: [String: Int]
    /// id → the bytes it stands for (empty for control tokens, which print nothing)
    private let tokenBytes: [[UInt8]]

    /// ggml token types (llama.h): 1 normal, 2 unknown, 3 control, 4 user-defined, 6 byte.
    public static let controlType = 3
    static let userDefinedType = 4
    static let byteType = 6

    public convenience init(gguf: GGUFFile) throws {
        let md = gguf.metadata
        let model = md["tokenizer.ggml.model"]?.string ?? "none"
        guard let tokens = md["tokenizer.ggml.tokens"]?.array?.compactMap(\.string), !tokens.isEmpty else {
            throw EngineError.missingKey("tokenizer.ggml.tokens")
        }
        let types = md["tokenizer.ggml.token_type"]?.array?.compactMap(\.int) ?? []
        let bos = md["tokenizer.ggml.bos_token_id"]?.int, eos = md["tokenizer.ggml.eos_token_id"]?.int
        switch model {
        case "gpt2":
            guard let mergeList = md["tokenizer.ggml.merges"]?.array?.compactMap(\.string) else {
                throw EngineError.missingKey("tokenizer.ggml.merges")
            }
            let preName = md["tokenizer.ggml.pre"]?.string ?? "gpt2"
            guard let pre = PreTokenizer(ggufName: preName) else {
                throw EngineError.invalidArgument("unsupported pre-tokenizer '\(preName)' in \(gguf.path) (supported: smollm, gpt2, qwen2, llama3)")
            }
            try self.init(tokens: tokens, tokenTypes: types, merges: mergeList, preTokenizer: pre, bos: bos, eos: eos)
            if md["tokenizer.ggml.add_bos_token"]?.bool == true, let bos { leadingBOS = [bos] }
        case "llama":
            guard let scores = md["tokenizer.ggml.scores"]?.array?.compactMap(\.float) else {
                throw EngineError.missingKey("tokenizer.ggml.scores")
            }
            let sp = try SentencePiece(tokens: tokens, scores: scores.map { Float($0) },
                                       addsSpacePrefix: md["tokenizer.ggml.add_space_prefix"]?.bool ?? true)
            self.init(tokens: tokens, tokenTypes: types, algorithm: .sentencePiece(sp), bos: bos, eos: eos)
            // llama.cpp's default for SentencePiece vocabularies is to add BOS.
            if md["tokenizer.ggml.add_bos_token"]?.bool ?? true, let bos { leadingBOS = [bos] }
        default:
            throw EngineError.invalidArgument("unsupported tokenizer '\(model)' in \(gguf.path) (supported: gpt2 byte-level BPE, llama SentencePiece)")
        }
    }

    /// A byte-level BPE tokenizer.
    public convenience init(tokens: [String], tokenTypes: [Int], merges mergeList: [String], preTokenizer: PreTokenizer,
                            bos: Int?, eos: Int?) throws {
        let bpe = try BytePairEncoding(idOf: Self.ids(of: tokens), merges: mergeList, preTokenizer: preTokenizer)
        self.init(tokens: tokens, tokenTypes: tokenTypes, algorithm: .bytePairs(bpe), bos: bos, eos: eos)
    }

    private static func ids(of tokens: [String]) -> [String: Int] {
        var idOf: [String: Int] = [:]
        idOf.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() where idOf[t] == nil { idOf[t] = i }
        return idOf
    }

    private init(tokens: [String], tokenTypes: [Int], algorithm: Algorithm, bos: Int?, eos: Int?) {
        self.tokens = tokens
        let types = tokenTypes.count == tokens.count ? tokenTypes : Array(repeating: 1, count: tokens.count)
        self.tokenTypes = types
        self.algorithm = algorithm
        self.bos = bos
        self.eos = eos
        let idOf = Self.ids(of: tokens)
        self.idOf = idOf
        userDefined = UserDefinedTokens(tokens: tokens, types: types)
        tokenBytes = tokens.enumerated().map { i, t in
            if types[i] == Self.controlType { return [] }
            switch algorithm {
            case .bytePairs: return BytePairEncoding.bytes(ofToken: t)
            case .sentencePiece: return SentencePiece.bytes(ofToken: t, type: types[i])
            }
        }
        var stops = Set<Int>()
        if let eos { stops.insert(eos) }
        for name in ["<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<end_of_turn>"] { if let id = idOf[name] { stops.insert(id) } }
        stopTokens = stops
    }

    public var vocabularySize: Int { tokens.count }

    /// The id of a token spelled exactly `text` (e.g. a special token), if any.
    public func id(of text: String) -> Int? { idOf[text] }

    /// Plain-text encoding: user-defined tokens cut out, then each fragment between them
    /// through the vocabulary's algorithm.
    public func encode(_ text: String) -> [Int] {
        var ids: [Int] = []
        if userDefined.isEmpty {
            encodeFragment(text[...], afterSpecial: true, into: &ids)
            return ids
        }
        let utf8 = Array(text.utf8)
        var afterSpecial = true
        for fragment in userDefined.split(utf8) {
            switch fragment {
            case .token(let id):
                ids.append(id)
                afterSpecial = true
            case .text(let range):
                // Cuts fall on whole tokens' bytes, so each fragment is whole UTF-8.
                encodeFragment(Substring(String(decoding: utf8[range], as: UTF8.self)), afterSpecial: afterSpecial, into: &ids)
                afterSpecial = false
            }
        }
        return ids
    }

    private func encodeFragment(_ text: Substring, afterSpecial: Bool, into ids: inout [Int]) {
        switch algorithm {
        case .bytePairs(let bpe): bpe.encode(text, into: &ids)
        case .sentencePiece(let sp): sp.encode(text, afterSpecial: afterSpecial, into: &ids)
        }
    }

    /// The bytes token `id` stands for; empty for control tokens and ids out of range.
    public func bytes(of id: Int) -> [UInt8] {
        id >= 0 && id < tokenBytes.count ? tokenBytes[id] : []
    }

    /// Decodes ids to text; invalid UTF-8 becomes U+FFFD.
    public func decode(_ ids: [Int]) -> String {
        String(decoding: ids.flatMap { bytes(of: $0) }, as: UTF8.self)
    }
}
