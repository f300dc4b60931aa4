/// Every error the engine reports to a user. Each case renders as one line that names the
/// problem and, where there is one, the file; the CLI prints `description` and exits non-zero.
public enum EngineError: Error, CustomStringConvertible, Equatable {
    case fileNotFound(String)
    case cannotRead(String, String)
    case notGGUF(String)
    case unsupportedGGUFVersion(String, UInt32)
    case truncated(String, String)
    case malformed(String, String)
    case missingKey(String)
    case unsupportedArchitecture(String)
    case unsupportedTensorType(String, UInt32)
    case missingTensor(String)
    case badTensorShape(String, expected: [Int], found: [Int])
    case invalidArgument(String)
    case damagedSession(String, String)

    /// One line whatever a file put in it: names from a file can hold newlines, NULs and
    /// escape sequences (see `String.escapingControls`).
    public var description: String { text.escapingControls() }

    private var text: String {
        switch self {
        case .fileNotFound(let p): return "model file not found: \(p)"
        case .cannotRead(let p, let why): return "cannot read \(p): \(why)"
        case .notGGUF(let p): return "not a GGUF file (bad magic): \(p)"
        case .unsupportedGGUFVersion(let p, let v): return "unsupported GGUF version \(v) (need 2 or 3): \(p)"
        case .truncated(let p, let what): return "truncated GGUF file (\(what)): \(p)"
        case .malformed(let p, let what): return "malformed GGUF file (\(what)): \(p)"
        case .missingKey(let k): return "model metadata is missing '\(k)'"
        case .unsupportedArchitecture(let a): return "unsupported model architecture '\(a)' (supported: llama, qwen2)"
        case .unsupportedTensorType(let t, let ty): return "tensor '\(t)' has unsupported type \(GGMLType.name(of: ty)) (supported: F32, F16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K)"
        case .missingTensor(let t): return "model is missing tensor '\(t)'"
        case .badTensorShape(let t, let e, let f): return "tensor '\(t)' has shape \(f), expected \(e)"
        case .invalidArgument(let why): return why
        case .damagedSession(let p, let what): return "cannot load session \(p): damaged: \(what)"
        }
    }
}

extension String {
    /// The string with every control character shown as a visible escape (ESC as \\u{1B}),
    /// so that text taken from a file cannot drive the terminal: a model whose metadata held
    /// escape sequences printed live colours in an error, one with a NUL cut the line, and a
    /// session's title set the terminal's title. Newlines and tabs stay when `keepingLines`.
    public func escapingControls(keepingLines: Bool = false) -> String {
        var out = String.UnicodeScalarView()
        for c in unicodeScalars {
            let control = c.value < 0x20 || (0x7F...0x9F).contains(c.value)
            if control && !(keepingLines && (c == "\n" || c == "\t")) {
                out.append(contentsOf: "\\u{\(String(c.value, radix: 16, uppercase: true))}".unicodeScalars)
            } else {
                out.append(c)
            }
        }
        return String(out)
    }
}
