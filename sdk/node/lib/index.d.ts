// Types of sbx-client (lib/index.js). Sizes: bytes or '64M'; durations:
// milliseconds or '500ms'; results in milliseconds.
import { EventEmitter } from 'node:events';
import { Readable } from 'node:stream';

export type Size = number | string;
export type Duration = number | string;
export type Verdict = 'UNSPECIFIED' | 'OK' | 'RUNTIME_ERROR' | 'SIGNALED' | 'TIME_LIMIT' |
  'WALL_TIME_LIMIT' | 'MEMORY_LIMIT' | 'OUTPUT_LIMIT' | 'WRONG_ANSWER' | 'COMPILE_ERROR' |
  'INTERNAL_ERROR';
export type SandboxState = 'UNSPECIFIED' | 'CREATING' | 'RUNNING' | 'DEAD' | 'DESTROYING';
export type Chunks = Iterable<Buffer | Uint8Array | string> | AsyncIterable<Buffer | Uint8Array | string> | Readable;

export declare const status: typeof import('@grpc/grpc-js').status;
export declare const DEFAULT_ADDRESS: string;
export declare function defaultAddress(): string;
export declare function normalizeAddress(address: string): string;
export declare function parseSize(value: Size, what?: string): number;
export declare function parseDurationNs(value: Duration, what?: string): number;
export declare function formatSize(bytes: number): string;

export declare class SbxError extends Error {
  code: number;
  codeName: string;
  details: string;
}

export interface Limits { memoryBytes: number | null; cpus: number | null; pids: number | null }
export interface Usage { memoryBytes: number; memoryPeakBytes: number; cpuTimeMs: number; pids: number; oomKills: number }
export interface ExecExit {
  exitCode: number; signal: number; wallTimeMs: number; cpuTimeMs: number; timedOut: boolean;
  verdict: Verdict; memoryPeakBytes: number; oomKilled: boolean; outputTruncated: boolean;
  cpuTimeExceeded: boolean; returnCode: number;
}
export interface ExecResult {
  stdout: Buffer; stderr: Buffer; exit: ExecExit; exitCode: number; signal: number; verdict: Verdict; ok: boolean;
}
export interface ExecLimits {
  cpuTime?: Duration; wallTime?: Duration; memory?: Size; pids?: number; output?: Size;
  fileSize?: Size; stack?: Size; openFiles?: number;
}
export interface SpawnOptions {
  env?: Record<string, string>; cwd?: string; user?: string; tty?: boolean; rows?: number; cols?: number;
  timeout?: Duration; limits?: ExecLimits; deadline?: number;
  onStarted?: (pid: number) => void; onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void; onExit?: (exit: ExecExit) => void;
}
export interface ExecOptions extends SpawnOptions { stdin?: Buffer | Uint8Array | string | Chunks }
export interface CreateOptions {
  image?: string; memory?: Size; cpus?: number; pids?: number; ttl?: Duration;
  labels?: Record<string, string>; env?: Record<string, string>; timeout?: number;
}
export interface FileEntry {
  path: string; content?: Buffer | Uint8Array | string | Chunks; mode?: number; isDir?: boolean; symlinkTarget?: string;
}
export type Files = Record<string, Buffer | Uint8Array | string | Chunks> | FileEntry[];
export interface TransferResult { files: number; bytes: number }
export interface TransferOptions { user?: string; deadline?: number }
export interface TestCase { stdin?: Buffer | string; expectedStdout?: Buffer | string; limits?: ExecLimits }
export interface CaseResult {
  verdict: Verdict; exit: ExecExit | null; stdout: Buffer; stderr: Buffer; stdoutCapped: boolean; checkerOutput: Buffer;
}
export interface RunOptions {
  runArgv: string[]; cases?: Array<TestCase | string | Buffer>; files?: Files; compileArgv?: string[];
  compileLimits?: ExecLimits; compare?: 'EXACT' | 'IGNORE_TRAILING_WHITESPACE'; checkerArgv?: string[];
  checkerLimits?: ExecLimits; outputCapBytes?: Size; image?: string; memory?: Size; cpus?: number;
  pids?: number; env?: Record<string, string>; deadline?: number;
}
export interface RunResult { verdict: Verdict; compile: CaseResult | null; cases: CaseResult[]; sandboxId: string }

export declare class ExecProcess extends EventEmitter {
  readonly pid: number | null;
  readonly done: boolean;
  write(data: Buffer | Uint8Array | string): Promise<void>;
  closeStdin(): Promise<void>;
  end(): Promise<void>;
  kill(signal?: string | number): Promise<void>;
  resize(rows: number, cols: number): Promise<void>;
  cancel(): void;
  wait(): Promise<ExecResult>;
}

export declare class Sandbox {
  readonly client: Client;
  id: string; state: SandboxState; image: string; limits: Limits; labels: Record<string, string>;
  usage: Usage; createdAt: Date | null; expiresAt: Date | null; initPid: number;
  refresh(): Promise<Sandbox>;
  destroy(options?: { timeout?: number }): Promise<boolean>;
  setLimits(limits: { memory?: Size; cpus?: number; pids?: number }): Promise<Sandbox>;
  exec(argv: string[], options?: ExecOptions): Promise<ExecResult>;
  spawn(argv: string[], options?: SpawnOptions): ExecProcess;
  writeFiles(files: Files, options?: TransferOptions): Promise<TransferResult>;
  writeFile(path: string, content: FileEntry['content'], options?: TransferOptions & { mode?: number }): Promise<TransferResult>;
  readFile(path: string, options?: TransferOptions): Promise<Buffer>;
  readFileChunks(path: string, onChunk: (chunk: Buffer) => void, options?: TransferOptions): Promise<TransferResult>;
}

export interface ClientOptions {
  timeout?: number | null; waitForReady?: boolean; maxMessageBytes?: number; protoDir?: string;
  /** Bearer token sent with every call as `authorization: Bearer <token>`, on any channel. */
  token?: string;
  /** Connect with TLS (off by default: the Unix socket is plain). The tls* options need it. */
  tls?: boolean;
  /** PEM CA that verifies the server; unset: the default roots. */
  tlsCaPem?: string | Buffer;
  /** Client certificate chain for mTLS; together with tlsKeyPem. */
  tlsCertPem?: string | Buffer;
  /** Its private key. */
  tlsKeyPem?: string | Buffer;
  /** Name expected in the server certificate; '' = the host of the address. */
  tlsServerName?: string;
}

export declare class Client {
  constructor(address?: string, options?: ClientOptions);
  readonly target: string;
  close(): void;
  waitReady(timeoutMs: number): Promise<void>;
  create(options?: CreateOptions): Promise<Sandbox>;
  get(id: string, options?: { timeout?: number }): Promise<Sandbox>;
  list(options?: { labels?: Record<string, string>; state?: SandboxState; timeout?: number }): Promise<Sandbox[]>;
  destroy(id: string, options?: { timeout?: number }): Promise<boolean>;
  setLimits(id: string, limits: { memory?: Size; cpus?: number; pids?: number; timeout?: number }): Promise<Sandbox>;
  withSandbox<T>(options: CreateOptions, fn: (box: Sandbox) => Promise<T>): Promise<T>;
  spawn(id: string, argv: string[], options?: SpawnOptions): ExecProcess;
  exec(id: string, argv: string[], options?: ExecOptions): Promise<ExecResult>;
  writeFiles(id: string, files: Files, options?: TransferOptions): Promise<TransferResult>;
  writeFile(id: string, path: string, content: FileEntry['content'], options?: TransferOptions & { mode?: number }): Promise<TransferResult>;
  readFile(id: string, path: string, options?: TransferOptions): Promise<Buffer>;
  readFileChunks(id: string, path: string, onChunk: (chunk: Buffer) => void, options?: TransferOptions): Promise<TransferResult>;
  run(options: RunOptions): Promise<RunResult>;
}

export declare function connect(address?: string, options?: ClientOptions): Client;
