import Engine
import Foundation
import XCTest

/// RoPE scaling (RopeScaling.swift): YaRN's correction range and mscale as the issue states
/// them, tables against an independent float64 transcription of llama.cpp's rope_yarn
/// (Reference/reference_yarn.py → yarn_golden.json), and the table beyond its end.
final class RopeScalingTests: XCTestCase {
    func testCorrectionDimsAndMscale() {
        let a = RopeScaling.correctionDims(headDim: 64, originalContext: 2048, base: 10000)
        XCTAssertEqual(a.low, 8)
        XCTAssertEqual(a.high, 21)
        let b = RopeScaling.correctionDims(headDim: 128, originalContext: 4096, base: 10000)
        XCTAssertEqual(b.low, 20)
        XCTAssertEqual(b.high, 46)
        for (s, expected) in [(2.0, 1.0693), (4.0, 1.1386), (8.0, 1.2079)] {
            XCTAssertEqual(RopeScaling(kind: .yarn, factor: s, originalContext: 2048).mscale, expected, accuracy: 5e-5)
        }
        XCTAssertEqual(RopeScaling(kind: .linear, factor: 4, originalContext: 2048).mscale, 1)
    }

    /// s = 1 under YaRN is no scaling, bit for bit, in the table and beyond it.
    func testFactorOneChangesNothing() {
        let plain = RopeTable(headDim: 64, positions: 4096, base: 100_000)
        let yarn = RopeTable(headDim: 64, positions: 4096, base: 100_000,
                             scaling: RopeScaling(kind: .yarn, factor: 1, originalContext: 2048))
        for p in [0, 1, 77, 4095, 4096, 123_456] {
            XCTAssertEqual(plain.rowValues(p).cos, yarn.rowValues(p).cos, "position \(p)")
            XCTAssertEqual(plain.rowValues(p).sin, yarn.rowValues(p).sin, "position \(p)")
        }
    }

    func testTablesMatchTheReference() throws {
        let cases = try XCTUnwrap(TestSupport.referenceJSON("yarn_golden.json") as? [[String: Any]])
        XCTAssertEqual(cases.count, 4)
        for c in cases {
            let kind = RopeScaling.Kind(rawValue: c["kind"] as! String)!
            let hd = c["head_dim"] as! Int, orig = c["orig_ctx"] as! Int
            let scaling = RopeScaling(kind: kind, factor: c["factor"] as! Double, originalContext: orig)
            XCTAssertEqual(scaling.mscale, c["mscale"] as! Double, accuracy: 1e-12)
            let positions = c["positions"] as! [Int]
            // A short table, so some positions come from the composed path beyond it.
            let table = RopeTable(headDim: hd, positions: 2000, base: c["base"] as! Double, scaling: scaling)
            let cos = c["cos"] as! [[Double]], sin = c["sin"] as! [[Double]]
            for (j, p) in positions.enumerated() {
                let row = table.rowValues(p)
                for i in 0..<hd / 2 {
                    XCTAssertEqual(Double(row.cos[i]), cos[j][i], accuracy: 2e-6, "\(kind) hd \(hd) p \(p) i \(i)")
                    XCTAssertEqual(Double(row.sin[i]), sin[j][i], accuracy: 2e-6, "\(kind) hd \(hd) p \(p) i \(i)")
                }
            }
        }
    }

    /// Past the table, positions are composed by angle addition; they agree with a table
    /// that reaches that far, up to float rounding, even a million positions in.
    func testComposedPositionsMatchATable() {
        let short = RopeTable(headDim: 64, positions: 10, base: 100_000)
        let long = RopeTable(headDim: 64, positions: 9000, base: 100_000)
        for p in [10, 1023, 1024, 5000, 8999] {
            let a = short.rowValues(p), b = long.rowValues(p)
            for i in 0..<32 {
                XCTAssertEqual(a.cos[i], b.cos[i], accuracy: 1e-6)
                XCTAssertEqual(a.sin[i], b.sin[i], accuracy: 1e-6)
            }
        }
        let far = short.rowValues(1_000_003)
        let theta5 = pow(100_000.0, -10.0 / 64)
        XCTAssertEqual(Double(far.cos[5]), cos(1_000_003 * theta5), accuracy: 1e-6)
        XCTAssertEqual(Double(far.sin[0]), sin(1_000_003.0), accuracy: 1e-6)
    }

    /// The GGUF's scaling keys (as ModelConfig reads them) become the default scaling.
    func testFileScalingIsTheDefault() {
        var config = TestSupport.shared.model.config
        XCTAssertEqual(RopeScaling(config: config).kind, .none)
        config.ropeScalingType = "yarn"
        config.ropeScalingFactor = 4
        config.ropeOriginalContext = 2048
        let s = RopeScaling(config: config)
        XCTAssertEqual(s.kind, .yarn)
        XCTAssertEqual(s.factor, 4)
        XCTAssertEqual(s.scaledContext, 8192)
    }
}
