#!/bin/sh
echo "$GREETING!"
