#!/bin/sh
echo "Hello from a wizard-built shell app!"
