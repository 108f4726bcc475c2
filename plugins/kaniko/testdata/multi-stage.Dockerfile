FROM 127.0.0.1:5000/base/busybox:1 AS build
RUN echo built > /x
FROM 127.0.0.1:5000/base/busybox:1
COPY --from=build /x /x
CMD ["cat", "/x"]
