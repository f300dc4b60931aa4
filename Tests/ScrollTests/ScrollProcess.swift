import Foundation
import XCTest

/// The `scroll` executable as the tests run it: real model, real process, real pipes.
enum ScrollProcess {
    private final class Marker {}
    static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()

    /// The built executable, beside the test bundle in .build/<config>/.
    static var executable: URL {
        var dir = Bundle(for: Marker.self).bundleURL
        if dir.pathExtension == "xctest" { dir.deleteLastPathComponent() }
        return dir.appendingPathComponent("scroll")
    }


}

struct Result { let status: Int32; let stdout: String; let stderr: String }

extension XCTestCase {
    /// Runs scroll to the end; `interruptAfter` seconds after its stdin is written, it gets
    /// a SIGINT (a Ctrl-C).
    func run(_ args: [String], stdin: Data? = nil, environment: [String: String] = [:],
             interruptAfter: Double? = nil, directory: URL = ScrollProcess.repoRoot) throws -> Result {
        let p = Process()
        p.executableURL = ScrollProcess.executable
        p.arguments = args
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        p.currentDirectoryURL = directory
        let out = Pipe(), err = Pipe(), inp = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = inp
        try p.run()
        if let stdin { inp.fileHandleForWriting.write(stdin) }
        try inp.fileHandleForWriting.close()
        if let interruptAfter {
            usleep(UInt32(interruptAfter * 1_000_000))
            p.interrupt()
        }
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, stdout: String(decoding: o, as: UTF8.self),
                      stderr: String(decoding: e, as: UTF8.self))
    }

}
