// The parts of Electron's API that main.ts, preload.cts and ipc.ts use, declared by hand.
// Why: the `electron` package is an optionalDependency whose install downloads its binary from
// Electron's release site; where that fails (machines that reach only the npm registry) the
// package and its typings are absent, and the build must still type-check. An ambient module
// declaration takes precedence over node_modules resolution, so this file is used even where
// the real package is installed. Keep it to what the shell needs; signatures follow Electron 39.
declare module 'electron' {
  import type { EventEmitter } from 'node:events';

  export interface Event {
    preventDefault(): void;
    readonly defaultPrevented: boolean;
  }

  export interface WebFrameMain {
    readonly url: string;
  }

  export interface WebContents extends EventEmitter {
    readonly id: number;
    send(channel: string, ...args: unknown[]): void;
    isDestroyed(): boolean;
    getURL(): string;
    setWindowOpenHandler(handler: (details: { url: string }) => { action: 'deny' } | { action: 'allow' }): void;
    on(event: 'will-navigate' | 'will-redirect', listener: (event: Event, url: string) => void): this;
    on(event: 'will-attach-webview', listener: (event: Event) => void): this;
    on(event: 'destroyed' | 'render-process-gone', listener: () => void): this;
    once(event: 'destroyed', listener: () => void): this;
    openDevTools(): void;
  }

  export interface IpcMainEvent {
    readonly sender: WebContents;
    readonly senderFrame: WebFrameMain | null;
  }
  export type IpcMainInvokeEvent = IpcMainEvent;

  export interface IpcMain {
    on(channel: string, listener: (event: IpcMainEvent, ...args: unknown[]) => void): this;
    handle(channel: string, listener: (event: IpcMainInvokeEvent, ...args: unknown[]) => unknown): void;
    removeHandler(channel: string): void;
    removeAllListeners(channel?: string): this;
  }
  export const ipcMain: IpcMain;

  export interface IpcRendererEvent {
    readonly sender: unknown;
  }
  export interface IpcRenderer {
    send(channel: string, ...args: unknown[]): void;
    invoke(channel: string, ...args: unknown[]): Promise<unknown>;
    on(channel: string, listener: (event: IpcRendererEvent, ...args: unknown[]) => void): this;
    removeAllListeners(channel: string): this;
  }
  export const ipcRenderer: IpcRenderer;

  export const contextBridge: {
    exposeInMainWorld(apiKey: string, api: unknown): void;
  };

  export interface WebPreferences {
    preload?: string;
    contextIsolation?: boolean;
    sandbox?: boolean;
    nodeIntegration?: boolean;
    nodeIntegrationInWorker?: boolean;
    webSecurity?: boolean;
    allowRunningInsecureContent?: boolean;
    webviewTag?: boolean;
    spellcheck?: boolean;
    navigateOnDragDrop?: boolean;
  }

  export interface BrowserWindowConstructorOptions {
    width?: number;
    height?: number;
    minWidth?: number;
    minHeight?: number;
    title?: string;
    icon?: string;
    show?: boolean;
    backgroundColor?: string;
    autoHideMenuBar?: boolean;
    webPreferences?: WebPreferences;
  }

  export class BrowserWindow extends EventEmitter {
    constructor(options?: BrowserWindowConstructorOptions);
    static getAllWindows(): BrowserWindow[];
    static fromWebContents(wc: WebContents): BrowserWindow | null;
    readonly webContents: WebContents;
    loadURL(url: string): Promise<void>;
    show(): void;
    focus(): void;
    restore(): void;
    isMinimized(): boolean;
    isDestroyed(): boolean;
    close(): void;
    hide(): void;
    isVisible(): boolean;
    once(event: 'ready-to-show', listener: () => void): this;
    on(event: 'closed', listener: () => void): this;
    on(event: 'close', listener: (event: Event) => void): this;
  }

  export interface NativeImage {
    resize(options: { width?: number; height?: number }): NativeImage;
  }
  export const nativeImage: { createFromPath(path: string): NativeImage };

  export class Tray extends EventEmitter {
    constructor(image: NativeImage | string);
    setToolTip(toolTip: string): void;
    setContextMenu(menu: Menu | null): void;
    destroy(): void;
    on(event: 'click', listener: () => void): this;
  }

  export interface MessageBoxOptions {
    type?: 'none' | 'info' | 'error' | 'question' | 'warning';
    title?: string;
    message: string;
    detail?: string;
    buttons?: string[];
    defaultId?: number;
    cancelId?: number;
    noLink?: boolean;
  }
  export interface OpenDialogOptions {
    title?: string;
    defaultPath?: string;
    properties?: Array<'openFile' | 'openDirectory' | 'showHiddenFiles' | 'treatPackageAsDirectory' | 'dontAddToRecent'>;
  }
  export interface SaveDialogOptions {
    title?: string;
    defaultPath?: string;
    properties?: Array<'showHiddenFiles' | 'createDirectory' | 'showOverwriteConfirmation' | 'dontAddToRecent'>;
  }
  export const dialog: {
    showMessageBox(window: BrowserWindow | null, options: MessageBoxOptions): Promise<{ response: number }>;
    showOpenDialog(window: BrowserWindow, options: OpenDialogOptions): Promise<{ canceled: boolean; filePaths: string[] }>;
    showSaveDialog(window: BrowserWindow, options: SaveDialogOptions): Promise<{ canceled: boolean; filePath?: string }>;
    showErrorBox(title: string, content: string): void;
  };

  export interface MenuItemConstructorOptions {
    label?: string;
    role?:
      | 'quit'
      | 'reload'
      | 'forceReload'
      | 'toggleDevTools'
      | 'resetZoom'
      | 'zoomIn'
      | 'zoomOut'
      | 'togglefullscreen'
      | 'about'
      | 'copy'
      | 'paste'
      | 'cut'
      | 'selectAll'
      | 'undo'
      | 'redo'
      | 'fileMenu'
      | 'editMenu'
      | 'viewMenu'
      | 'windowMenu';
    type?: 'normal' | 'separator' | 'submenu';
    accelerator?: string;
    submenu?: MenuItemConstructorOptions[];
    click?: () => void;
  }
  export class Menu {
    static buildFromTemplate(template: MenuItemConstructorOptions[]): Menu;
    static setApplicationMenu(menu: Menu | null): void;
  }

  export interface CustomScheme {
    scheme: string;
    privileges?: { standard?: boolean; secure?: boolean; supportFetchAPI?: boolean; corsEnabled?: boolean; stream?: boolean };
  }
  export const protocol: {
    registerSchemesAsPrivileged(schemes: CustomScheme[]): void;
    handle(scheme: string, handler: (request: Request) => Response | Promise<Response>): void;
  };

  export interface Session {
    setPermissionRequestHandler(
      handler: ((wc: WebContents, permission: string, callback: (granted: boolean) => void) => void) | null,
    ): void;
    setPermissionCheckHandler(handler: ((wc: WebContents | null, permission: string) => boolean) | null): void;
    on(event: 'will-download', listener: (event: Event, item: unknown) => void): this;
  }
  export const session: { readonly defaultSession: Session };

  export interface App extends EventEmitter {
    requestSingleInstanceLock(): boolean;
    whenReady(): Promise<void>;
    quit(): void;
    exit(code?: number): void;
    getPath(name: 'userData' | 'home' | 'temp'): string;
    getAppPath(): string;
    readonly isPackaged: boolean;
    setName(name: string): void;
    on(event: 'second-instance' | 'window-all-closed' | 'activate', listener: () => void): this;
    on(event: 'before-quit' | 'will-quit', listener: (event: Event) => void): this;
    on(event: 'web-contents-created', listener: (event: Event, contents: WebContents) => void): this;
  }
  export const app: App;
}
