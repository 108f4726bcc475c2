#!/bin/sh
# Prints the greeting baked in at build time.
echo "$(cat /app/greeting.txt)!"
