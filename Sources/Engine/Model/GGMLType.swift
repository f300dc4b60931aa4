import CKernels

/// The tensor types Scroll can compute with; raw values are ggml's type ids.
public enum GGMLType: UInt32, CaseIterable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q4_K = 12, q5_K = 13, q6_K = 14

    public var blockSize: Int { Int(ck_type_block_size(Int32(rawValue))) }
    public var blockBytes: Int { Int(ck_type_block_bytes(Int32(rawValue))) }
    public func byteCount(elements: Int) -> Int { elements / blockSize * blockBytes }

    /// ggml's names for every type id, supported or not, for error messages.
    public static func name(of id: UInt32) -> String {
        let names = ["F32", "F16", "Q4_0", "Q4_1", "Q4_2", "Q4_3", "Q5_0", "Q5_1", "Q8_0", "Q8_1",
                     "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K", "Q8_K", "IQ2_XXS", "IQ2_XS", "IQ3_XXS",
                     "IQ1_S", "IQ4_NL", "IQ3_S", "IQ2_S", "IQ4_XS", "I8", "I16", "I32", "I64", "F64",
                     "IQ1_M", "BF16"]
        return id < names.count ? names[Int(id)] : "type \(id)"
    }
}
