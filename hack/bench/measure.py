#!/usr/bin/env python3
"""Runs a command and prints one JSON line: wall seconds, peak RSS, bytes read via read(2)
(rchar, sampled from /proc/<pid>/io until exit) and block-device input (ru_inblock)."""
import json, os, subprocess, sys, time

def main():
    cmd = sys.argv[1:]
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    rchar = 0
    while True:
        try:
            with open(f"/proc/{proc.pid}/io") as f:
                for line in f:
                    if line.startswith("rchar:"):
                        rchar = max(rchar, int(line.split()[1]))
        except OSError:
            pass
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid != 0:
            break
        time.sleep(0.01)
    wall = time.monotonic() - start
    err = proc.stderr.read().decode(errors="replace")
    print(json.dumps({
        "wall_s": round(wall, 3),
        "max_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "rchar_bytes": rchar,
        "inblock_bytes": usage.ru_inblock * 512,
        "exit": os.waitstatus_to_exitcode(status),
        "stderr_tail": err[-400:] if os.waitstatus_to_exitcode(status) != 0 else "",
    }))

main()
