"""The peers' imapbench.py, run unchanged, that also writes each command not answered OK with
the server's tagged reply to stderr (`NOT OK: <command> -> <reply>`): imapbench.py only counts
them, and these lines are the evidence for failures.

    python3 bench/imapbench-logged.py PATH/TO/imapbench.py ARGS...
"""
import importlib.util
import sys

path, args = sys.argv[1], sys.argv[2:]
spec = importlib.util.spec_from_file_location("imapbench", path)
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)
plain_command = tool.Imap.command


async def command(self, text, literal=None, keep=True, timeout=60):
    status, untagged = await plain_command(self, text, literal=literal, keep=keep, timeout=timeout)
    if status != "OK":
        # The tagged reply is the last line consumed, still in the read buffer.
        reply = self.buf[:self.pos].rstrip(b"\r\n").rsplit(b"\n", 1)[-1]
        words = text.split(" ")
        shown = text if words[0].upper() != "LOGIN" else " ".join(words[:2] + ["***"])  # no password
        print(f"NOT OK: {shown[:200]} -> {reply.decode(errors='replace')[:300]}", file=sys.stderr, flush=True)
    return status, untagged


tool.Imap.command = command
sys.argv = [path] + args
tool.main()
